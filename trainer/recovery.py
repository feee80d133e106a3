"""Keeping job states honest: jobs whose worker died are requeued or failed, never left "running".

Called by a worker when it starts and while it idles, and by the web app when it lists jobs, so a
job left behind by a dead worker is fixed even while no worker runs.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from trainer.step_dirs import latest_checkpoint_step
from trainer.store import ACTIVE, Job, JobStore, pid_alive

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STALE_AFTER_S = 60.0
STOP_TIMEOUT_S = 180.0


def kill_orphan_child(pid: int | None) -> None:
    """A training process whose worker died would keep writing into the job folder: end it."""
    if not pid_alive(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return
    if b"trainer.run_job" not in cmdline and b"tests.test_trainer_" not in cmdline:
        return  # the pid was reused by something else
    log.warning("ending training process %s left behind by a dead worker", pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as exc:
        log.warning("could not end process %s: %s", pid, exc)


def _owner_alive(job: Job, stale_s: float, now: float) -> bool:
    fresh = job.heartbeat_at is not None and now - job.heartbeat_at < stale_s
    return pid_alive(job.worker_pid) and fresh


def reconcile(store: JobStore, jobs_root: Path, *, stale_s: float = STALE_AFTER_S,
              stop_timeout_s: float = STOP_TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS) -> list[Job]:
    """Fix every running/stopping job whose worker is gone; returns the jobs that changed."""
    now = time.time()
    changed = []
    for job in store.list(ACTIVE):
        if _owner_alive(job, stale_s, now):
            continue
        if job.worker_pid and pid_alive(job.worker_pid) and job.status == "running":
            continue  # alive but slow to report: its own monitor decides; a dead pid is certain
        kill_orphan_child(job.child_pid)
        checkpoint = latest_checkpoint_step(jobs_root / job.id)
        who = f"the worker (pid {job.worker_pid})" if job.worker_pid else "the worker"
        if job.status == "stopping":
            if job.stop_requested_at and now - job.stop_requested_at < min(stale_s, stop_timeout_s) \
                    and pid_alive(job.worker_pid):
                continue
            if job.control == "delete":
                store.finish(job.id, "stopped", message="Stopped before deletion.", resumable=False)
            else:
                store.finish(job.id, "stopped", resumable=True,
                             message=f"Stopped: {who} ended before the job finished stopping. "
                                     + _resume_hint(checkpoint))
        elif job.attempts >= max_attempts:
            store.finish(job.id, "failed", resumable=checkpoint is not None,
                         error=f"{who.capitalize()} stopped {job.attempts} times while running this job "
                               f"(last at step {job.step}); it was not retried again. Check the worker log.")
        else:
            store.requeue(job.id, f"Requeued: {who} stopped while this job ran at step {job.step}; "
                                  + _resume_hint(checkpoint))
        changed.append(store.get(job.id))
        log.warning("job %s: %s", job.id, changed[-1].message or changed[-1].error)
    return changed


def _resume_hint(checkpoint: int | None) -> str:
    if checkpoint is None:
        return "it starts again from the beginning (no checkpoint was saved yet)."
    return f"it continues from the checkpoint at step {checkpoint}."
