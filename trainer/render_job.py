"""`python -m trainer.render_job <render_id>`: one "Try the LoRA" render in its own process.

The worker starts it like a training run, so a crash or an out-of-memory kill ends only this process
and the GPU memory is given back when it exits. It reports progress into the job store and ends the
render itself (completed or failed with a sentence); the worker fails it only when it died first.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from studio.disk import disk_full_message, is_disk_full
from studio.job_reporter import JobReporter
from studio.jobs import JobStore
from studio.settings import Settings
from studio.workspace import Workspace, confined
from trainer import renders
from trainer.job_log import RunLog
from trainer.run_job import child_main, is_training_error


def _default_render() -> Callable:
    from trainer.engine.try_lora import render

    return render


def _request(config: dict):
    from trainer.engine.try_lora import TryRequest

    return TryRequest(prompt=config["prompt"], strengths=tuple(config["strengths"]), seed=int(config["seed"]),
                      width=int(config["width"]), height=int(config["height"]), steps=int(config["steps"]),
                      guidance_scale=float(config["guidance_scale"]),
                      quantize_base=config.get("quantize_base") or "none",
                      float8_matmuls=bool(config.get("float8_matmuls")))


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


def execute(settings: Settings, render_id: str, *, render_fn: Callable | None = None) -> int:
    """Render one queued-and-claimed render to its end; returns the process exit code."""
    workspace = Workspace(settings.root)
    store = JobStore(workspace.db_path)
    render = store.get(render_id)
    parent = store.find(render.parent_id) if render.parent_id else None
    if parent is None:
        store.finish(render.id, "failed", error="Its training job was deleted.")
        return 1
    out_dir = renders.folder(workspace, render)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_log = RunLog(out_dir / "log.txt")
    reporter = JobReporter(store, render.id, every_s=0.5)
    started = time.monotonic()
    try:
        if settings.demo:
            from studio.demo import ensure_demo_models

            reporter({"phase": "loading", "message": "Preparing the tiny demo models."})
            ensure_demo_models(settings, caption=False, zimage=True)
        from studio.registry import model_paths

        loras = render.config["loras"]
        run_log(f"Rendering {render.config['prompt']!r} with {', '.join(lora['file'] for lora in loras)} at "
                f"strengths {', '.join(f'{s:g}' for s in render.config['strengths'])}, seed {render.config['seed']}.")
        files = [confined(workspace.jobs / parent.id, *lora["file"].split("/")) for lora in loras]
        images = (render_fn or _default_render())(_request(render.config), files, model_paths(settings), out_dir,
                                                  on_progress=reporter, log=run_log,
                                                  labels=[lora["label"] for lora in loras])
    except BaseException as exc:  # noqa: B036 - every way out must end the render with a reason
        reporter.flush()
        if not is_training_error(exc):
            traceback.print_exc()
        message = _failure(exc, workspace.root)
        run_log(f"Failed: {message}")
        store.finish(render.id, "failed", error=message)
        return 3 if is_training_error(exc) else 1
    reporter.flush()
    seconds = time.monotonic() - started
    count = len(images)
    store.finish(render.id, "completed", message=f"Rendered {count} image{'s' * (count != 1)} in {seconds:.0f} s.",
                 result={"images": images, "seconds": round(seconds, 1)})
    return 0


def main(argv: list[str] | None = None) -> int:
    return child_main(argv, "python -m trainer.render_job <render_id>", execute)


if __name__ == "__main__":
    sys.exit(main())
