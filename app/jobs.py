"""Background jobs (imports, auto-caption, export) in threads of the web process.

Each job's progress is a JSON file under `<dataset>/.jobs/`, so a page reload finds it again, and a
job left `running` by a process that no longer exists reads as `interrupted` instead of hanging.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from studio.atomic import atomic_write_json, read_json
from studio.processes import pid_alive
from studio.workspace import safe_name

log = logging.getLogger(__name__)

ACTIVE = {"queued", "running"}
FINISHED = {"done", "failed", "cancelled", "interrupted"}


class JobCancelled(Exception):
    """Raised inside a job when the user cancelled it."""


class JobError(Exception):
    """A job failed for a reason the user can act on; the message is shown as is."""


class Job:
    """Progress of one job; `update()` persists at most a few times a second."""

    def __init__(self, folder: Path, kind: str, job_id: str | None = None, total: int = 0):
        self.folder = folder
        self.id = job_id or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self.path = folder / f"{self.id}.json"
        self.cancel_event = threading.Event()
        self._lock = threading.Lock()
        self._last_write = 0.0
        self.state = {
            "id": self.id, "kind": kind, "state": "queued", "done": 0, "total": total, "message": "",
            "current": None, "errors": [], "result": {}, "pid": os.getpid(),
            "created_at": time.time(), "started_at": None, "finished_at": None, "eta_s": None,
        }

    def update(self, force: bool = False, **changes) -> None:
        with self._lock:
            self.state.update(changes)
            state = self.state
            started, done, total = state.get("started_at"), state.get("done", 0), state.get("total", 0)
            if started and done and total and state["state"] == "running":
                rate = (time.time() - started) / done
                state["eta_s"] = round(rate * max(0, total - done), 1)
            now = time.monotonic()
            if not force and now - self._last_write < 0.25:
                return
            self._last_write = now
            state["updated_at"] = time.time()
            atomic_write_json(self.path, state)

    def add_error(self, item: str, message: str) -> None:
        with self._lock:
            self.state["errors"].append({"item": item, "message": message})

    def check_cancel(self) -> None:
        if self.cancel_event.is_set() or (self.folder / f"{self.id}.cancel").exists():
            raise JobCancelled()


class JobRunner:
    """Starts jobs in daemon threads; at most `max_parallel` of one kind run at once, the rest wait
    queued (kinds have their own slots, so a long caption run never holds up an export)."""

    def __init__(self, max_parallel: int = 2):
        self.max_parallel = max_parallel
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._jobs: dict[str, Job] = {}
        self._guard = threading.Lock()

    def _slot(self, kind: str) -> threading.BoundedSemaphore:
        with self._guard:
            return self._slots.setdefault(kind, threading.BoundedSemaphore(self.max_parallel))

    def start(self, folder: Path, kind: str, work: Callable[[Job], dict | None], total: int = 0) -> Job:
        folder.mkdir(parents=True, exist_ok=True)
        job = Job(folder, kind, total=total)
        job.update(force=True)
        atomic_write_json(folder / f"latest-{kind}.json", {"id": job.id})
        with self._guard:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], dict | None]) -> None:
        with self._slot(job.state["kind"]):
            try:
                job.check_cancel()
                job.update(force=True, state="running", started_at=time.time())
                result = work(job) or {}
                job.update(force=True, state="done", result=result, current=None, eta_s=0,
                           finished_at=time.time(), message=job.state.get("message") or "Finished.")
            except JobCancelled:
                job.update(force=True, state="cancelled", message="Cancelled.", current=None, finished_at=time.time())
            except JobError as exc:
                job.update(force=True, state="failed", message=str(exc), current=None, finished_at=time.time())
            except Exception as exc:  # a bug in one job must never take the service down
                log.exception("job %s failed", job.id)
                job.update(force=True, state="failed", current=None, finished_at=time.time(),
                           message=f"Unexpected error: {type(exc).__name__}: {exc}. The service log has details.")
            finally:
                with self._guard:
                    self._jobs.pop(job.id, None)

    def cancel(self, folder: Path, job_id: str) -> bool:
        safe_name(job_id)
        with self._guard:
            job = self._jobs.get(job_id)
        if job is not None:
            job.cancel_event.set()
            return True
        state = read_json(folder / f"{job_id}.json", None)
        if state and state.get("state") in ACTIVE:
            # owned by another process of this service: it polls for this file
            (folder / f"{job_id}.cancel").touch()
            return True
        return False

    def running_in(self, folder: Path, kind: str | None = None) -> list[Job]:
        with self._guard:
            return [j for j in self._jobs.values()
                    if j.folder == folder and (kind is None or j.state["kind"] == kind)]


def read_job(folder: Path, job_id: str) -> dict | None:
    state = read_json(folder / f"{safe_name(job_id)}.json", None)
    if not isinstance(state, dict):
        return None
    if state.get("state") in ACTIVE and not pid_alive(state.get("pid")):
        state["state"] = "interrupted"
        state["message"] = "Interrupted: the service restarted while this was running. Start it again."
        atomic_write_json(folder / f"{job_id}.json", state)
    return state


def latest_job(folder: Path, kind: str) -> dict | None:
    pointer = read_json(folder / f"latest-{kind}.json", None)
    if not isinstance(pointer, dict) or not pointer.get("id"):
        return None
    return read_job(folder, pointer["id"])


def mark_interrupted(datasets_root: Path) -> int:
    """At start: jobs whose process is gone are marked interrupted (progress stays readable)."""
    count = 0
    if not datasets_root.is_dir():
        return 0
    for path in datasets_root.glob("*/.jobs/*.json"):
        if path.name.startswith("latest-"):
            continue
        state = read_json(path, None)
        if isinstance(state, dict) and state.get("state") in ACTIVE and not pid_alive(state.get("pid")):
            read_job(path.parent, path.stem)
            count += 1
    return count
