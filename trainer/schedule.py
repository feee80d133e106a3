"""When each queued training job should start and be done, for people who queue several jobs and leave:
the running job's measured ETA (its estimate while it loads), then each queued job's estimate in queue
order. Estimates come from the recipe's model and the images each job trains on (rough, and said so)."""

from __future__ import annotations

import logging
import os
import threading

from studio.jobs import Job, JobStore
from studio.settings import Settings
from studio.workspace import Workspace
from trainer.dataset_checks import image_names, image_size
from trainer.validation import detect_gpu, models_download_left_s

log = logging.getLogger(__name__)

_estimates: dict[tuple[str, float], float | None] = {}  # (job id, updated_at) -> seconds for the whole run
_lock = threading.Lock()


def job_seconds(settings: Settings, job: Job) -> float | None:
    """The recipe's estimate for the whole job (None when it cannot be made); cached while the job row
    does not change, since queued jobs are listed on every update of the running one."""
    key = (job.id, job.updated_at)
    with _lock:
        if key in _estimates:
            return _estimates[key]
    seconds = _estimate(settings, job)
    with _lock:
        if len(_estimates) > 1000:
            _estimates.clear()
        _estimates[key] = seconds
    return seconds


def _estimate(settings: Settings, job: Job) -> float | None:
    from trainer.recipes import ConfigError, get_recipe
    from trainer.run_job import training_sources

    try:
        recipe = get_recipe(job.recipe or "zimage-turbo")
        config = recipe.config_from_dict(job.config)
        sources = [(folder, repeats, image_names(os.listdir(folder)))
                   for folder, repeats in training_sources(Workspace(settings.root), job)]
    except (ConfigError, LookupError, OSError, ValueError) as exc:
        log.debug("no estimate for job %s: %s", job.id, exc)
        return None
    sizes = [size for folder, repeats, names in sources
             for size in (image_size(folder / name) for name in names) if size for _ in range(repeats)]
    gpu = detect_gpu()
    images = sum(len(names) for _, _, names in sources)
    return recipe.estimate(config, images, gpu.name if gpu else None, settings.demo, sizes).seconds


def data_missing(settings: Settings, job: Job) -> str | None:
    """Why a queued job cannot train (a dataset version it reads was deleted while it waited), else None: the
    worker fails such a job the moment it takes it, so it holds the queue up for no time."""
    from studio.exports import ExportMissing
    from trainer.run_job import training_sources

    try:
        training_sources(Workspace(settings.root), job)
    except ExportMissing as exc:
        return str(exc)
    return None


def _remaining(settings: Settings, job: Job) -> float | None:
    if job.stopping:
        return 0.0  # a stop was asked for: it saves a checkpoint and ends, whatever its ETA said
    if job.status == "running" and job.eta_s is not None:
        return job.eta_s  # measured
    whole = job_seconds(settings, job)
    if whole is None:
        return None
    return whole * (1 - job.done / job.total) if job.total else whole  # a resumed job has steps behind it


def schedule(settings: Settings, running: list[Job], queue: list[Job], start_s: float = 0.0,
             workers: int = 1) -> dict[str, dict]:
    """{job id: {starts_in_s, done_in_s}} for the queued jobs, in queue order, as far as estimates go; the
    queue moves `start_s` from now at the earliest (a model download it waits for). `workers` jobs train at
    once (one per GPU, studio.gpus): each queued job starts on the first worker to come free."""
    free = [start_s] * max(1, workers, len(running))  # when each worker is free to take the next job
    for job in running:
        left = _remaining(settings, job)
        if left is None:
            return {}
        free[free.index(min(free))] += left
    out = {}
    for job in queue:
        missing = data_missing(settings, job)
        left = 0.0 if missing else _remaining(settings, job)
        if left is None:
            break
        slot = free.index(min(free))
        out[job.id] = {"starts_in_s": round(free[slot]), "done_in_s": round(free[slot] + left),
                       **({"data_missing": missing} if missing else {})}
        free[slot] += left
    return out


def queue_schedule(settings: Settings, store: JobStore, queue: list[Job] | None = None) -> dict[str, dict]:
    """The schedule of the training queue as it stands in `store` (`queue`: store.queue(), when at hand); none while
    no worker runs (nothing starts until one does: the pages say so instead of promising times)."""
    queue = store.queue() if queue is None else queue
    if not queue:
        return {}
    workers = len(store.workers())
    if not workers:
        return {}
    download_s = models_download_left_s(settings)
    if download_s is None:  # waiting for a download with no ETA yet: no honest start time
        return {}
    return schedule(settings, store.list(("running",), kind="train", limit=64), queue, download_s, workers)
