"""`python -m trainer.run_job <job_id>`: one training job in its own process.

The worker starts this for each job so that a crash, an out-of-memory kill or a hung CUDA call ends
only this process. It reports progress into the job store, and leaves `outcome.json` in the job
folder saying what happened (finished, stopped early, or an error); the worker reads that (or the exit
code, when there is none) and decides the job's status.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from studio import exports
from studio.atomic import atomic_write_json, place_file
from studio.disk import disk_full_message, is_disk_full
from studio.job_reporter import JobReporter
from studio.jobs import JobStore
from studio.settings import Settings, SettingsError, load_settings
from studio.workspace import Workspace, confined
from trainer.lora_file import START_LORA_FILE, LoraFileError
from trainer.step_dirs import latest_checkpoint_step

log = logging.getLogger("trainer.run_job")
OUTCOME_FILE = "outcome.json"
EXIT_TRAINING_ERROR = 3
PROGRESS_EVERY_S = 1.0


def training_sources(workspace: Workspace, job) -> list[tuple[Path, int]]:
    """Every exported folder a job trains on, with its repeats: the version it recorded (re-exporting the
    name never changes it); jobs of the first release, which recorded only the name, read the name's current
    export. ExportMissing when a version is no longer on disk."""
    out = []
    for source in job.sources:
        if source.get("version"):
            folder = exports.require_version(workspace, source["version"], source["name"])
        else:
            folder = workspace.export_dir(source["name"])
        out.append((folder, int(source.get("repeats") or 1)))
    return out


def training_data(workspace: Workspace, job) -> Path | list[tuple[Path, int]]:
    """What the engine trains on: the folder of a one-dataset job, the (folder, repeats) list of one with
    several."""
    sources = training_sources(workspace, job)
    return sources if job.datasets else sources[0][0]


def stage_start_lora(workspace: Workspace, job, job_dir: Path) -> None:
    """A job that starts from a LoRA of the library (config `init_lora`) gets its own copy in its folder
    the first time it runs, so a later change in the library never changes what it resumes with."""
    name = (job.config or {}).get("init_lora")
    target = job_dir / START_LORA_FILE
    if not name or target.is_file() or latest_checkpoint_step(job_dir):  # a resume reads its checkpoint
        return
    source = confined(workspace.loras, f"{name}.safetensors")
    if not source.is_file():
        raise LoraFileError(f"The LoRA {name} to start from is no longer in the LoRA library: put it back (or "
                            "clone the job and pick another one).")
    place_file(source, target)


def die_with_parent() -> None:
    """Linux: end this process when the worker dies, so a job never runs twice in one folder."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    parent = os.environ.get("TRAINER_PARENT_PID")
    if parent and os.getppid() != int(parent):
        sys.exit(1)  # the worker died before prctl took effect


def _default_parse(recipe_name: str, config: dict):
    from trainer.recipes import get_recipe

    return get_recipe(recipe_name).config_from_dict(config)


def _default_train() -> Callable:
    from trainer.engine import train

    return train


def _make_control(job_dir: Path):
    from trainer.engine import TrainingControl

    return TrainingControl(job_dir)


def is_training_error(exc: BaseException) -> bool:
    """The engine's user-facing errors (by name: importing the engine here would load torch for nothing)."""
    return type(exc).__name__ in {"TrainingError", "ConfigError", "ExportMissing", "LoraFileError"}


def _crash_message(exc: BaseException, root: Path) -> str:
    name = type(exc).__name__
    if is_disk_full(exc):
        return disk_full_message(root, "The training's latest file") + " Resume the job then."
    if name == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return ("The training ran out of memory. Pick a smaller memory preset (lower resolution, "
                "quantized base weights, gradient checkpointing on) and resume.")
    return f"The training stopped with an unexpected error ({name}: {exc}). The job log has the details."


def execute(settings: Settings, job_id: str, *, train_fn: Callable | None = None,
            parse_config: Callable[[str, dict], object] | None = None,
            control_factory: Callable[[Path], object] | None = None) -> int:
    """Run one job to its end; returns the process exit code. The hooks let tests swap the engine."""
    workspace = Workspace(settings.root)
    store = JobStore(workspace.db_path)
    job = store.get(job_id)
    job_dir = workspace.job_dir(job.id)
    (job_dir / "control").mkdir(parents=True, exist_ok=True)
    outcome_path = job_dir / OUTCOME_FILE
    outcome_path.unlink(missing_ok=True)

    def on_term(signum, frame):
        # cooperative: the engine checkpoints at the next step and returns
        (job_dir / "control" / "stop").touch()

    signal.signal(signal.SIGTERM, on_term)
    store.heartbeat(job.id, child_pid=os.getpid())
    reporter = JobReporter(store, job.id, every_s=PROGRESS_EVERY_S)
    started = time.time()
    try:
        config = (parse_config or _default_parse)(job.recipe, job.config)
        if settings.demo:
            from studio.demo import ensure_demo_models

            reporter({"phase": "loading", "message": "Preparing the tiny demo models."})
            ensure_demo_models(settings, caption=False, zimage=True)
        from studio.registry import model_paths

        control = (control_factory or _make_control)(job_dir)
        dataset_dir = training_data(workspace, job)
        stage_start_lora(workspace, job, job_dir)
        result = (train_fn or _default_train())(config, dataset_dir, job_dir, model_paths(settings), control,
                                                 reporter)
    except BaseException as exc:  # noqa: B036 - every way out must leave an outcome for the worker
        reporter.flush()
        if isinstance(exc, KeyboardInterrupt | SystemExit) and not is_training_error(exc):
            traceback.print_exc()
            message = "The training process was interrupted."
            code = 1
        elif is_training_error(exc):
            message = str(exc)
            code = EXIT_TRAINING_ERROR
            print(f"error: {message}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
            message = _crash_message(exc, workspace.root)
            code = 1
        atomic_write_json(outcome_path, {"outcome": "error", "error": message, "step": reporter.values.get("step")})
        return code
    reporter.flush()
    result = dict(result or {})
    steps_done = int(result.get("steps") or reporter.values.get("step") or 0)
    lora = result.get("lora_path")
    if result.get("stopped"):
        atomic_write_json(outcome_path, {"outcome": "stopped", "result": result, "step": steps_done})
    elif not lora:
        atomic_write_json(outcome_path, {"outcome": "error", "step": steps_done,
                                         "error": "The training ended without writing a LoRA file."})
        return EXIT_TRAINING_ERROR
    else:
        result.setdefault("seconds", time.time() - started)
        atomic_write_json(outcome_path, {"outcome": "completed", "result": result, "step": steps_done})
    return 0


def child_main(argv: list[str] | None, usage: str, run: Callable[[Settings, str], int]) -> int:
    """A process the worker starts for one job (`usage` names it): it ends with the worker, reads the
    settings and runs `run(settings, id)`."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    die_with_parent()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(settings, argv[0])


def main(argv: list[str] | None = None) -> int:
    return child_main(argv, "python -m trainer.run_job <job_id>", execute)


if __name__ == "__main__":
    sys.exit(main())
