"""What a running job's work sees of the job store: progress reports and the stop check.

Writes are throttled (a few a second at most, at once on a new phase or when forced) and never raise:
a busy or full database must not end an import or a training run; the next report tries again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from studio.jobs import JobStopped, JobStore

log = logging.getLogger(__name__)


class JobReporter:
    """Progress of one running job. Call it with a dict (the training engine's `on_progress`) or use
    `update(**values)`; `check_stop()` raises JobStopped once a stop was asked for."""

    def __init__(self, store: JobStore, job_id: str, *, every_s: float = 0.25, stop_check_s: float = 0.5):
        self.store = store
        self.id = job_id
        self.every_s = every_s
        self.stop_check_s = stop_check_s
        self.values: dict = {"errors": []}
        self.started = time.time()
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._last_phase = None
        self._last_stop_check = 0.0
        self._stop = False

    @property
    def message(self) -> str:
        return self.values.get("message") or ""

    @property
    def errors(self) -> list:
        return self.values["errors"]

    def __call__(self, values: dict) -> None:
        self.update(**values)

    def update(self, force: bool = False, **values) -> None:
        with self._lock:
            self.values.update(values)
            self._estimate()
            now = time.monotonic()
            phase = self.values.get("phase")
            if not force and phase == self._last_phase and now - self._last_write < self.every_s:
                return
            self._last_phase = phase
            self._last_write = now
            snapshot = dict(self.values)
        self._write(snapshot)

    def _estimate(self) -> None:
        """ETA from the rate so far, unless the work measures its own (training does)."""
        values = self.values
        done, total = values.get("done") or 0, values.get("total") or 0
        if "step" in values or not done or not total:
            return
        rate = (time.time() - self.started) / done
        values["eta_s"] = round(rate * max(0, total - done), 1)

    def add_error(self, item: str, message: str) -> None:
        with self._lock:
            self.values["errors"].append({"item": item, "message": message})

    def flush(self) -> None:
        """Record the last report even if it came within the throttle interval."""
        with self._lock:
            snapshot = dict(self.values)
        self._write(snapshot)

    def _write(self, values: dict) -> None:
        try:
            self.store.progress(self.id, values)
        except sqlite3.Error:
            log.exception("job %s: could not record progress; the next report tries again", self.id)

    def stop_requested(self) -> bool:
        if self._stop:
            return True
        now = time.monotonic()
        if now - self._last_stop_check < self.stop_check_s:
            return False
        self._last_stop_check = now
        try:
            self._stop = self.store.stop_requested(self.id)
        except sqlite3.Error:
            log.exception("job %s: could not read the stop flag", self.id)
        return self._stop

    def check_stop(self) -> None:
        if self.stop_requested():
            raise JobStopped()


class QuietReporter:
    """A reporter for the same work run outside the job store (the serverless worker's ZIP guard and hub
    download); `on_update`, when given, receives each report's values; `stop`, when set, ends the work."""

    message = ""
    errors: list = []

    def __init__(self, on_update=None, stop: threading.Event | None = None):
        self.on_update, self.stop = on_update, stop  # `stop` set: the work ends at its next check (JobStopped)

    def __call__(self, values: dict) -> None:
        self.update(**values)

    def update(self, force: bool = False, **values) -> None:
        if self.on_update is not None:
            self.on_update(values)

    def add_error(self, item: str, message: str) -> None:
        return None

    def flush(self) -> None:
        return None

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise JobStopped()
