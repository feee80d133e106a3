"""Cooperative control of a running job: stop, and on-demand sample/save requests.

The default implementation uses files under job_dir/control/ so that another process (the web app,
a signal handler, a shell) can ask by touching a file; the loop polls between steps.
"""

from __future__ import annotations

import threading
from pathlib import Path

REQUESTS = ("sample", "save")


class StopRequested(Exception):
    """A stop asked while the run prepares, renders previews or evaluates: it ends that work at its next image or
    batch instead of after it (minutes on a big dataset), and the run ends as stopped."""


class TrainingControl:
    def __init__(self, job_dir: Path | None = None):
        self.control_dir = Path(job_dir) / "control" if job_dir is not None else None
        self._stop = threading.Event()
        self._requests: set[str] = set()
        self._lock = threading.Lock()

    # in-process callers (a signal handler, a test) use these; other processes touch files
    def request_stop(self) -> None:
        self._stop.set()

    def request(self, name: str) -> None:
        if name not in REQUESTS:
            raise ValueError(f"unknown request {name!r}")
        with self._lock:
            self._requests.add(name)

    def should_stop(self) -> bool:
        """Whether a stop was asked; the training loop asks before every step."""
        return self._asked()

    def _asked(self) -> bool:
        if self._stop.is_set():
            return True
        if self.control_dir is not None and (self.control_dir / "stop").exists():
            self._stop.set()
            return True
        return False

    def check(self) -> None:
        """StopRequested when a stop was asked: for work between steps that takes a while."""
        if self._asked():  # not should_stop: a control that decides when the loop stops keeps to its steps
            raise StopRequested()

    def take_requests(self) -> set[str]:
        with self._lock:
            taken, self._requests = self._requests, set()
        if self.control_dir is not None:
            for name in REQUESTS:
                path = self.control_dir / name
                if path.exists():
                    path.unlink(missing_ok=True)
                    taken.add(name)
        return taken

    def clear_stop(self) -> None:
        """Forget an earlier stop request (before resuming a stopped job)."""
        self._stop.clear()
        if self.control_dir is not None:
            (self.control_dir / "stop").unlink(missing_ok=True)

