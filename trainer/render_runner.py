"""The worker's side of a render: start `trainer.render_job` in a child process, keep its heart beating,
and end the render when the child could not (it died, or the worker is shutting down)."""

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


def default_render_command(render_id: str) -> list[str]:
    return [sys.executable, "-m", "trainer.render_job", render_id]


def run_render(worker, render: Job) -> Job | None:
    """Run one claimed render; returns it as it ended (None when it was deleted meanwhile)."""
    from trainer.worker import REPO, describe_exit

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
    ended = _watch(worker, render, proc, worker.render_timeout_s)
    current = store.find(render.id)
    if current is None:  # deleted while it rendered
        return None
    if store.find(render.parent_id or "") is None:  # its training job was deleted while it rendered
        if current.status == "running":
            store.finish(render.id, "failed", error="Its training job was deleted.")
        store.delete(render.id)
        return None
    if current.status == "running" and worker.shutdown:
        return store.requeue(render.id, "The worker shut down while rendering; it renders again when the worker "
                                        "is back.")
    if current.status == "running":  # the child died before it could end the render
        tail = log_tail(out_dir / "log.txt")
        limit = worker.render_timeout_s
        took = f"{limit / 60:.0f} min" if limit >= 60 else f"{limit:.0f} s"
        error = f"The render process {describe_exit(proc.returncode)}." if ended != "timeout" else \
            f"The render took longer than {took} and was ended (a stuck GPU call?); render it again."
        if tail:
            error += " Last log lines:\n" + "\n".join(tail)
        log.error("render %s failed: %s", render.id, error)
        return store.finish(render.id, "failed", error=error)
    return current


def _watch(worker, render: Job, proc: subprocess.Popen, timeout_s: float) -> str | None:
    """Wait for the child with heartbeats. "deleted": the render was deleted under it; "timeout": it ran
    past `timeout_s`; both end the child. None: it ended by itself (or at a shutdown)."""
    last_beat = 0.0
    started = time.monotonic()
    shutdown_at = None
    while True:
        try:
            proc.wait(timeout=0.25)
            return None
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if worker.shutdown:
            shutdown_at = shutdown_at or now
            if now - shutdown_at > SHUTDOWN_GRACE_S:  # a render starts again from nothing: no need to wait
                _end(proc)
                return None
        if now - started > timeout_s:
            log.error("render %s ran past %.0f s; ending it", render.id, timeout_s)
            _end(proc)
            return "timeout"
        if now - last_beat < worker.heartbeat_s:
            continue
        last_beat = now
        try:
            worker.store.heartbeat(render.id)
            worker.store.worker_beat(worker.pid, "busy", render.id)
            current = worker.store.find(render.id)
        except sqlite3.Error as exc:  # a full disk or a long lock must not abandon the child
            log.warning("render %s: could not reach the job store (%s); retrying", render.id, exc)
            continue
        if current is None:
            _end(proc)
            return "deleted"


def _end(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
