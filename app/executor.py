"""Runs the dataset manager's jobs (imports, auto-caption, exports, object storage) in threads of the
web process. Their state lives in the studio's job store, so a page reload or another process finds
them, and a job whose process died is marked interrupted by the one recovery at start."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from studio.disk import disk_full_message, is_disk_full
from studio.job_reporter import JobReporter
from studio.jobs import Job, JobError, JobStopped, JobStore
from studio.processes import process_token

log = logging.getLogger(__name__)

DATASET_KINDS = ("import", "caption", "export", "s3-import", "s3-push", "hub-push")
Work = Callable[[JobReporter], dict | None]


class JobExecutor:
    """At most `max_parallel` jobs of one kind run at once, the rest wait queued (kinds have their own
    slots, so a long caption run never holds up an export)."""

    def __init__(self, store: JobStore, max_parallel: int = 2):
        self.store = store
        self.max_parallel = max_parallel
        self.owner = process_token()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._guard = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self.on_end: list[Callable[[str], None]] = []  # told each job's id once it ended (the express driver wakes)

    def _slot(self, kind: str) -> threading.BoundedSemaphore:
        with self._guard:
            return self._slots.setdefault(kind, threading.BoundedSemaphore(self.max_parallel))

    def submit(self, kind: str, dataset: str, work: Work, *, total: int = 0, name: str = "",
               parent_id: str | None = None, config: dict | None = None, job: Job | None = None) -> Job:
        """Queue `work` as a new job (or run an existing queued one, e.g. a stage of a chain) and
        return it at once; the work gets a JobReporter."""
        if job is None:
            job, _ = self.store.create(kind, dataset=dataset, name=name, total=total, parent_id=parent_id,
                                       config=config, owner=self.owner, message="Waiting for a free slot.")
        thread = threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True)
        with self._guard:
            self._threads[job.id] = thread
        thread.start()
        return job

    def _run(self, job: Job, work: Work) -> None:
        try:
            with self._slot(job.kind):
                if self.store.start(job.id, self.owner) is None:
                    return  # stopped while it waited for a slot
                self._execute(job, work)
        finally:
            with self._guard:
                self._threads.pop(job.id, None)
            for listener in self.on_end:
                try:
                    listener(job.id)
                except Exception:  # a listener's bug never outlives its job's thread
                    log.exception("a listener of job %s's end failed", job.id)

    def _execute(self, job: Job, work: Work) -> None:
        reporter = JobReporter(self.store, job.id)
        try:
            reporter.check_stop()
            result = work(reporter) or {}
            reporter.flush()
            self.store.finish(job.id, "completed", message=reporter.message or "Finished.", result=result)
        except JobStopped:
            reporter.flush()
            now = self.store.find(job.id)  # how far it came: "Stopped at 40 of 120." (what it did stays)
            where = f" at {now.done:,} of {now.total:,}" if now is not None and now.total else ""
            self.store.finish(job.id, "stopped", resumable=True, message=f"Stopped{where}.")
        except JobError as exc:
            reporter.flush()
            self.store.finish(job.id, "failed", error=str(exc), resumable=True)
        except Exception as exc:  # a bug in one job must never take the service down
            reporter.flush()
            if is_disk_full(exc):
                log.warning("job %s: disk full: %s", job.id, exc)
                error = disk_full_message(self.store.db_path.parent, "Its last step")
            else:
                log.exception("job %s failed", job.id)
                error = f"Unexpected error: {type(exc).__name__}: {exc}. The service log has details."
            self.store.finish(job.id, "failed", resumable=True, error=error)

    def running(self, dataset: str | None = None) -> list[Job]:
        """Jobs this process is running or about to run (for `dataset`)."""
        with self._guard:
            ids = list(self._threads)
        jobs = [self.store.find(job_id) for job_id in ids]
        return [job for job in jobs if job is not None and (dataset is None or job.dataset == dataset)]

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Wait for a job of this process to end (tests, and API clients that ask to wait)."""
        with self._guard:
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
