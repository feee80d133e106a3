"""The worker's side of renders: start `trainer.render_job` in a child process, keep the hearts of its
renders beating, and end a render when the child could not (it died, or the worker is shutting down).

The child may render several in a row with its models loaded (it claims the next ones itself, for this
worker), so the worker watches every running render it owns, not only the one it claimed. While the
child waits for a next render with nothing running, the worker reports itself "warm".
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time

from studio.jobs import Job
from trainer import renders
from trainer.job_log import log_tail, stamped

log = logging.getLogger("trainer.worker")
SHUTDOWN_GRACE_S = 10.0
TIMEOUT_S = 1800.0  # a render longer than this is stuck (a hung GPU call): it must not hold the queue
# a cancelled render ends between two pictures; one whose picture (or model load) takes longer ends with its process
CANCEL_GRACE_S = 20.0


def default_render_command(render_id: str) -> list[str]:
    return [sys.executable, "-m", "trainer.render_job", render_id]


def _mine(worker) -> list[Job]:
    """The renders this worker's child is rendering now."""
    return [job for job in worker.store.list(("running",), kind=renders.KIND, limit=100)
            if job.owner == worker.owner]


def run_render(worker, render: Job) -> Job | None:
    """Run one claimed render (and whatever its process renders next); returns the claimed one as it
    ended (None when it was deleted meanwhile)."""
    from trainer.worker import REPO

    store = worker.store
    out_dir = renders.folder(worker.workspace, render)
    out_dir.mkdir(parents=True, exist_ok=True)
    worker.ask_caption_service_to_unload()
    with open(out_dir / "log.txt", "ab") as log_file:
        log_file.write(stamped(f"worker {worker.pid}: starting render attempt {render.attempts}").encode())
        log_file.flush()
        proc = subprocess.Popen(worker.render_command(render.id), cwd=REPO, env=worker.child_env(render),
                                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    store.heartbeat(render.id, child_pid=proc.pid)
    ended = _watch(worker, proc)
    for left in [render, *(job for job in _mine(worker) if job.id != render.id)]:
        _settle(worker, left, proc.returncode, ended, out_dir)
    return store.find(render.id)


def _settle(worker, render: Job, returncode: int | None, ended: str | None, process_log_dir) -> None:
    """After the child ended: a render it left running, or whose training job went away, is ended here."""
    from studio.processes import describe_exit

    store = worker.store
    current = store.find(render.id)
    if current is None:  # deleted while it rendered
        return
    orphan = not renders.library_file_of(render) and store.find(render.parent_id or "") is None
    if orphan:  # its training job was deleted while it rendered
        if current.status == "running":
            store.finish(render.id, "failed", error="Its training job was deleted.")
        store.delete(render.id)
        return
    if current.status != "running" or current.owner != worker.owner:
        return
    if current.control == "delete":  # cancelled by the user while it rendered: it goes, pictures and all
        store.finish(render.id, "stopped", message="Cancelled.")
        store.delete(render.id)
        renders.remove_files(worker.workspace, render)
        return
    if worker.shutdown:
        store.requeue(render.id, "The worker shut down while rendering; it renders again when the worker is back.")
        return
    tail = log_tail(renders.folder(worker.workspace, render) / "log.txt") or log_tail(process_log_dir / "log.txt")
    limit = worker.render_timeout_s
    took = f"{limit / 60:.0f} min" if limit >= 60 else f"{limit:.0f} s"
    error = f"The render process {describe_exit(returncode)}." if ended != "timeout" else \
        f"The render took longer than {took} and was ended (a stuck GPU call?); render it again."
    if tail:
        error += " Last log lines:\n" + "\n".join(tail)
    log.error("render %s failed: %s", render.id, error)
    store.finish(render.id, "failed", error=error)


def _watch(worker, proc: subprocess.Popen) -> str | None:
    """Wait for the child with heartbeats. "deleted": a render was deleted under it; "cancelled": one was
    cancelled CANCEL_GRACE_S ago and is still rendering; "timeout": one ran past the worker's render_timeout_s;
    all three end the child. None: it ended by itself (or at a shutdown)."""
    last_beat = 0.0
    shutdown_at = None
    running: list[Job] = []
    while True:
        try:
            proc.wait(timeout=0.25)
            return None
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if worker.shutdown:
            shutdown_at = shutdown_at or now
            # nothing rendering (it waits for a next render), or past the grace: a render starts again from nothing
            if not running or now - shutdown_at > SHUTDOWN_GRACE_S:
                _end(proc)
                return None
        if now - last_beat < worker.heartbeat_s:
            continue
        last_beat = now
        try:
            before, running = running, _mine(worker)
            for job in running:
                worker.store.heartbeat(job.id)
            worker.store.worker_beat(worker.pid, "busy" if running else "warm", running[0].id if running else None)
            # deleted with its training job (a finished render deleted on its own is no reason to stop)
            gone = [job for job in before if worker.store.find(job.id) is None
                    and worker.store.find(job.parent_id or "") is None]
        except sqlite3.Error as exc:  # a full disk or a long lock must not abandon the child
            log.warning("renders: could not reach the job store (%s); retrying", exc)
            continue
        if gone:
            _end(proc)
            return "deleted"
        if any(job.control == "delete" and time.time() - (job.stop_requested_at or time.time()) > CANCEL_GRACE_S
               for job in running):
            _end(proc)
            return "cancelled"
        if any(time.time() - (job.started_at or time.time()) > worker.render_timeout_s for job in running):
            log.error("a render ran past %.0f s; ending it", worker.render_timeout_s)
            _end(proc)
            return "timeout"


def _end(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
