"""Whether the training worker runs, as the express page needs to know it.

Training jobs are run by the worker process (`python -m trainer.worker`), which reports in the job store
(studio.jobs.JobStore.workers: a recent beat from a process that still runs). Without one a queued training job
waits forever and a running one, whose worker died, makes no progress: the page would show "queued" or "running"
with nothing moving. While the run waits for training and no worker runs, the page says so and what to do; the
notice goes by itself once a worker reports in (it then picks the job up, from its last checkpoint).
"""

from __future__ import annotations

from app import context
from studio.jobs import Job

WAITING = ("queued", "running", "interrupted")  # a training job that needs a worker to go on

WHAT_TO_DO = ("It starts with the studio and restarts by itself within seconds; if this message stays, restart the "
              "studio, or start the worker with: python -m trainer.worker (its log, logs/worker.log, says why it "
              "stopped). This page goes on by itself once a worker runs")


def worker_notice(express: Job, train: Job | None) -> dict | None:
    """What the page says while this run waits for training and no worker runs; None while one runs or the run
    waits for nothing from a worker."""
    if express.status != "running" or express.phase != "train" or train is None or train.status not in WAITING:
        return None
    if context.jobs().workers():
        return None
    if train.status == "queued" and not train.done:
        said = "Training has not started: the training worker is not running, so the job waits in the queue."
        return {"running": False, "message": f"{said} {WHAT_TO_DO}."}
    where = f" at step {train.done} of {train.total}" if train.total else ""
    said = f"Training is not progressing: the training worker is not running (training stopped{where})."
    return {"running": False, "message": f"{said} {WHAT_TO_DO}, and training continues from its last checkpoint."}
