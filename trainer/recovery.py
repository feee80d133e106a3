"""Keeping training jobs honest: a job whose worker died is never left "running".

The job store's one recovery (`interrupt_orphans`) marks such a job interrupted; here a training job's
orphaned child process is ended first (so two processes never write one job folder), and every
interrupted training job is queued again to continue from its checkpoint, unless its runs keep dying.
Called by a worker when it starts and while it idles, and by the web app when it lists jobs, so a job
left behind by a dead worker is fixed even while no worker runs.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from studio.jobs import Job, JobStore
from studio.processes import pid_alive, token_alive
from studio.workspace import Workspace
from trainer.job_log import RunLog
from trainer.renders import KIND as RENDER
from trainer.renders import PAUSED
from trainer.renders import remove_files as remove_render_files
from trainer.step_dirs import latest_checkpoint_step

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STOP_TIMEOUT_S = 180.0


def kill_orphan_child(pid: int | None) -> None:
    """A training or render process whose worker died would keep writing into the job folder: end it."""
    if not pid_alive(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return
    if not any(name in cmdline for name in (b"trainer.run_job", b"trainer.render_job", b"tests.test_trainer_")):
        return  # the pid was reused by something else
    log.warning("ending process %s (a training run or a render) left behind by a dead worker", pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as exc:
        log.warning("could not end process %s: %s", pid, exc)


def resume_hint(checkpoint: int | None, who: str = "It") -> str:
    if checkpoint is None:
        return f"{who} starts again from the beginning (no checkpoint was saved yet)."
    return f"{who} continues from the checkpoint at step {checkpoint}."


def _tell_job_log(job_dir: Path, message: str) -> None:
    """The job page's log says why the next attempt started (or why there is none)."""
    if not job_dir.is_dir():
        return  # it never started: nothing was lost and there is no log yet
    try:
        RunLog(job_dir / "log.txt")(message)
    except OSError as exc:  # a full disk: the job store still has the message
        log.warning("could not write to %s: %s", job_dir / "log.txt", exc)


def _end_orphan_children(store: JobStore, kind: str) -> None:
    for job in store.list(("running",), kind=kind, limit=100_000):
        if job.owner and not token_alive(job.owner):
            kill_orphan_child(job.child_pid)


def reconcile_renders(store: JobStore, max_attempts: int = 2, workspace: Workspace | None = None) -> None:
    """A render whose worker died renders again from nothing (it takes seconds), at most twice; one being
    cancelled then goes, as it would have (with its pictures, given the `workspace`)."""
    _end_orphan_children(store, RENDER)
    cancelling = {job.id for job in store.list(("running",), kind=RENDER, limit=100_000) if job.control == "delete"}
    for render in store.interrupt_orphans((RENDER,)):
        if render.id in cancelling and render.status == "stopped" and store.delete(render.id):
            if workspace is not None:
                remove_render_files(workspace, render)
            log.warning("render %s: its worker ended while it was being cancelled; deleted", render.id)
    for render in store.list(("interrupted",), kind=RENDER, limit=100_000):
        if render.attempts >= max_attempts:
            store.finish(render.id, "failed", error=f"The worker stopped {render.attempts} times while rendering "
                                                    "this; it was not tried again. Render it again.")
        else:
            store.requeue(render.id, "The worker stopped while rendering this; it renders again.")


def reconcile(store: JobStore, jobs_root: Path, *, max_attempts: int = MAX_ATTEMPTS,
              workspace: Workspace | None = None) -> list[Job]:
    """Fix every training job (and render) whose worker is gone; returns the training jobs that changed (a job
    being deleted when its worker died goes on to Recently deleted, as it would have, given the `workspace`)."""
    reconcile_renders(store, workspace=workspace)
    _end_orphan_children(store, "train")
    deleting = {job.id for job in store.list(("running",), kind="train", limit=100_000) if job.control == "delete"}
    changed = {job.id: job for job in store.interrupt_orphans(("train",))}
    for job in list(changed.values()):
        if job.id in deleting and job.status == "stopped" and workspace is not None:
            from trainer.trash import trash_job

            trash_job(workspace, store, job)
            log.warning("job %s: its worker ended while it was being deleted; moved to Recently deleted", job.id)
            del changed[job.id]
        elif job.status == "stopped" and job.details.get(PAUSED):  # paused for renders: it still goes on after them
            store.progress(job.id, {PAUSED: None})
            hint = resume_hint(latest_checkpoint_step(jobs_root / job.id))
            changed[job.id] = store.resume(job.id, "Paused for the renders, but the worker stopped while it saved; "
                                                   f"queued again behind them. {hint}")
            _tell_job_log(jobs_root / job.id, changed[job.id].message)
        elif job.status == "stopped":  # asked to stop, and its worker died first: where Resume would go on from
            hint = resume_hint(latest_checkpoint_step(jobs_root / job.id), who="Resume")
            changed[job.id] = store.update(job.id, message=f"{job.message} {hint}")
            _tell_job_log(jobs_root / job.id, changed[job.id].message)
    requeued = []
    for job in store.list(("interrupted",), kind="train", limit=100_000):
        hint = resume_hint(latest_checkpoint_step(jobs_root / job.id))
        if job.attempts >= max_attempts:
            changed[job.id] = store.finish(
                job.id, "failed", resumable=True,
                error=f"The worker stopped {job.attempts} times while running this job (last at step {job.step}); "
                      "it was not retried again. Check the worker log, then resume it.")
        else:
            said = job.message or "Interrupted."  # a pod stop's message already says where it continues
            changed[job.id] = store.requeue(job.id, f"{said} Queued again." if hint in said
                                            else f"{said} Queued again. {hint}")
            requeued.append(changed[job.id])
        now = changed[job.id]
        log.warning("job %s: %s", job.id, now.message)
        _tell_job_log(jobs_root / job.id, now.error or now.message)
    # they were training: they go on first, ahead of jobs queued meanwhile, in the order they had
    for job in sorted(requeued, key=lambda j: j.queue_key or j.created_at, reverse=True):
        changed[job.id] = store.move_to_front(job.id)
    return list(changed.values())
