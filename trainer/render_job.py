"""`python -m trainer.render_job <render_id>`: "Try the LoRA" renders in their own process.

The worker starts it like a training run, so a crash or an out-of-memory kill ends only this process
and the GPU memory is given back when it exits. It reports progress into the job store and ends each
render itself (completed or failed with a sentence); the worker fails one only when the process died.

The process keeps its models for the next render (`RenderSession`): when it has rendered the one the
worker claimed, it claims the next queued render itself (for the same worker) if the loaded models
suit it, and waits up to RENDER_KEEP_WARM_S for one while nothing else needs the GPU. A queued
training job, a caption job, a failed render or a render for other memory settings ends it, and the
worker goes on as usual.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from studio.disk import disk_full_message, is_disk_full
from studio.job_reporter import JobReporter
from studio.jobs import ACTIVE, Job, JobStopped, JobStore
from studio.settings import Settings
from studio.workspace import UnsafePathError, Workspace, confined
from trainer import renders
from trainer.job_log import RunLog
from trainer.lora_file import LoraFileError
from trainer.run_job import child_main, is_training_error

POLL_S = 0.5
# work that needs the GPU (or the caption model's memory) more than a warm render process does
GPU_WORK = {"train": ("queued",), "caption": ACTIVE, "express": ACTIVE}


def request_of(config: dict):
    from trainer.engine.try_lora import TryRequest

    return TryRequest(prompt=config["prompt"], strengths=tuple(config["strengths"]), seed=int(config["seed"]),
                      width=int(config["width"]), height=int(config["height"]), steps=int(config["steps"]),
                      guidance_scale=float(config["guidance_scale"]),
                      quantize_base=config.get("quantize_base") or "none",
                      float8_matmuls=bool(config.get("float8_matmuls")))


def _default_session(settings: Settings):
    from studio.registry import model_paths
    from trainer.engine.try_lora import RenderSession

    if settings.demo:
        from studio.demo import ensure_demo_models

        ensure_demo_models(settings, caption=False, zimage=True)
    return RenderSession(model_paths(settings))


def _failure(exc: BaseException, root: Path) -> str:
    if is_training_error(exc):
        return str(exc)
    name = type(exc).__name__
    if is_disk_full(exc):
        return disk_full_message(root, "The rendered image") + " Render again then."
    if name == "OutOfMemoryError" or isinstance(exc, MemoryError) or "out of memory" in str(exc):
        return ("The render ran out of GPU memory. Try a smaller size, or fewer strengths at once; a training "
                "job's memory preset also applies to its renders.")
    return f"The render stopped with an unexpected error ({name}: {exc}). Its log has the details."


def lora_files(workspace: Workspace, store: JobStore, render: Job) -> list[Path]:
    """The LoRA files a render tries: its training job's or a file of the library, and the library's beside them.
    FileNotFoundError when what it tries went meanwhile (the render goes too)."""
    name = renders.library_file_of(render)
    if name and not confined(workspace.loras, name).is_file():
        raise FileNotFoundError(f"{name} was deleted from the LoRA library.")
    parent = store.find(render.parent_id) if render.parent_id else None
    if not name and parent is None:
        raise FileNotFoundError("Its training job was deleted.")
    return [confined(workspace.loras, lora["file"]) if lora.get("library") or name
            else confined(workspace.jobs / parent.id, *lora["file"].split("/")) for lora in render.config["loras"]]


def _still_there(path: Path, role: str) -> Path:
    """A library file a render uses besides the one it tries; a LoraFileError (the render fails with it) when it
    was deleted while the render waited."""
    if not path.is_file():
        raise LoraFileError(f"{path.name}, which this render was to {role}, was deleted from the LoRA library; "
                            "render again without it.")
    return path


def _check_beside(files: list[Path], loras: list[dict]) -> None:
    for path, lora in zip(files, loras, strict=True):
        if lora.get("library"):
            _still_there(path, "show beside it")


def stacked_files(workspace: Workspace, render: Job) -> list[tuple[Path, float, str]]:
    """The library LoRAs a render applies to every image ("with"): (file, strength, label)."""
    return [(_still_there(confined(workspace.loras, item["file"]), "use too"), float(item["strength"]),
             str(item.get("label") or Path(item["file"]).stem)) for item in render.config.get("with") or []]


def _cancellable(reporter: JobReporter) -> Callable[[dict], None]:
    """The engine's progress callback: it reports, and ends the render (JobStopped) between two pictures once the
    user cancelled it; the models stay loaded for the next one."""
    def report(values: dict) -> None:
        reporter(values)
        reporter.check_stop()
    return report


def _cancelled(workspace: Workspace, store: JobStore, render: Job) -> int:
    """A render the user cancelled (deleted while it rendered): it goes, with the pictures it made so far."""
    if store.find(render.id) is not None:
        store.finish(render.id, "stopped", message="Cancelled.")
        store.delete(render.id)
    renders.remove_files(workspace, render)
    return 0


def render_one(workspace: Workspace, store: JobStore, session, render: Job) -> int:
    """Render one claimed render to its end with `session`; returns an exit code (0: completed or cancelled)."""
    try:
        files = lora_files(workspace, store, render)
    except FileNotFoundError as exc:  # deleted while the render waited: nothing is left to show it
        store.finish(render.id, "failed", error=str(exc))
        store.delete(render.id)
        return 1
    except UnsafePathError as exc:  # a config that names a file outside its folder
        store.finish(render.id, "failed", error=str(exc))
        return 1
    out_dir = renders.folder(workspace, render)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_log = RunLog(out_dir / "log.txt")
    reporter = JobReporter(store, render.id, every_s=0.5, stop_check_s=0.0)  # a stop is read once a picture
    started = time.monotonic()
    try:
        loras = render.config["loras"]
        together = "".join(f", with {item['file']} at {item['strength']:g}" for item in render.config.get("with") or [])
        run_log(f"Rendering {render.config['prompt']!r} with {', '.join(lora['file'] for lora in loras)} at "
                f"strengths {', '.join(f'{s:g}' for s in render.config['strengths'])}, seed {render.config['seed']}"
                f"{together}.")
        _check_beside(files, loras)
        session.log = run_log
        images = session.render(request_of(render.config), files, out_dir, _cancellable(reporter),
                                [lora["label"] for lora in loras], stack=stacked_files(workspace, render))
    except JobStopped:
        return _cancelled(workspace, store, render)
    except BaseException as exc:  # noqa: B036 - every way out must end the render with a reason
        reporter.flush()
        if not is_training_error(exc):
            run_log(traceback.format_exc().rstrip())
        message = _failure(exc, workspace.root)
        run_log(f"Failed: {message}")
        store.finish(render.id, "failed", error=message)
        return 3 if is_training_error(exc) else 1
    reporter.flush()
    seconds = time.monotonic() - started
    count = len(images)
    took = f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"
    ended = store.finish(render.id, "completed", message=f"Rendered {count} image{'s' * (count != 1)} in {took} s.",
                         result={"images": images, "seconds": round(seconds, 1)}, unless_stopped=True)
    if ended.status == "running":  # cancelled as its last picture was made, up to the moment it was to complete
        return _cancelled(workspace, store, render)
    return 0


def gpu_wanted(store: JobStore) -> bool:
    """Other work waits for the GPU (training), or may load a model onto it (captioning)."""
    return any(store.count(statuses, kind=kind, work=True) for kind, statuses in GPU_WORK.items())


def next_render(store: JobStore, owner: str, session, keep_warm_s: float, *,
                clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Job | None:
    """Claim the next queued render for this process (as `owner`, the worker that started it), waiting up
    to `keep_warm_s` for one; None when this process should end (see the module's docstring)."""
    deadline = clock() + keep_warm_s
    while True:
        queued = store.queue(renders.KIND)
        if queued:
            try:
                fits = session.fits(request_of(queued[0].config))
            except (KeyError, TypeError, ValueError):
                fits = False  # not a render this code can read: a fresh process fails it with a reason
            if not fits:
                return None  # or other memory settings: a fresh process serves it
            claimed = store.start(queued[0].id, owner)
            if claimed is None:
                continue  # deleted meanwhile
            store.heartbeat(claimed.id, child_pid=os.getpid())
            store.progress(claimed.id, {"phase": "starting", "message": "Starting (the model is loaded already)."})
            return store.get(claimed.id)
        if clock() >= deadline or gpu_wanted(store):
            return None
        sleep(POLL_S)


def execute(settings: Settings, render_id: str, *, session=None) -> int:
    """Render the claimed render, then every next one this process may take; returns the last exit code."""
    workspace = Workspace(settings.root)
    store = JobStore(workspace.db_path)
    render = store.get(render_id)
    try:
        session = session or _default_session(settings)
    except BaseException as exc:  # noqa: B036 - the demo models could not be made: say why
        store.finish(render.id, "failed", error=_failure(exc, workspace.root))
        raise
    try:
        code = render_one(workspace, store, session, render)
        while code == 0 and render.owner:
            render = next_render(store, render.owner, session, settings.render_keep_warm_s)
            if render is None:
                break
            code = render_one(workspace, store, session, render)
    finally:
        session.close()
    return code


def main(argv: list[str] | None = None) -> int:
    return child_main(argv, "python -m trainer.render_job <render_id>", execute)


if __name__ == "__main__":
    sys.exit(main())
