"""How a serverless job tells of its progress: engine and download updates forwarded to RunPod at most every couple
of seconds (RunpodSender through the SDK's progress_update), and a download's progress that ends it at RunPod's stop."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from serverless.dataset import JobStopped

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 2.0


def stop_check(stop: threading.Event | None, progress: Callable[[dict], None]) -> Callable[[dict], None]:
    """`progress` for a download: a stop ends it at the next block."""

    def report(update: dict) -> None:
        if stop is not None and stop.is_set():
            raise JobStopped()
        progress(update)

    return report


class ProgressReporter:
    """Forwards engine progress to RunPod at most every couple of seconds (and on every phase change)."""

    def __init__(self, send: Callable[[dict], None], interval_s: float = PROGRESS_INTERVAL_S):
        self._send = send
        self._interval = interval_s
        self._last_time = 0.0
        self._last_phase: str | None = None

    def __call__(self, update: dict) -> None:
        phase = update.get("phase")
        now = time.monotonic()
        if phase == self._last_phase and phase != "done" and now - self._last_time < self._interval:
            return
        self._last_phase, self._last_time = phase, now
        keys = ("phase", "step", "total_steps", "loss", "smooth_loss", "eta_s", "it_per_s", "message",
                "files_done", "files_total", "bytes_done", "bytes_total", "evaluation")
        payload = {k: update[k] for k in keys if update.get(k) not in (None, "")}
        try:
            self._send(payload)
        except Exception:  # progress is best effort: a failed update must never fail the training
            log.warning("could not send a progress update", exc_info=True)


class RunpodSender:
    """Sends progress through `runpod.serverless.progress_update`; without a RunPod webhook (the SDK's local
    test mode) progress is only logged."""

    def __init__(self, job: dict):
        self.job = job
        self.enabled = bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))
        self._threads: list[threading.Thread] = []

    def __call__(self, payload: dict) -> None:
        log.info("progress %s", payload)
        if not self.enabled:
            return
        import runpod

        before = set(threading.enumerate())
        runpod.serverless.progress_update(self.job, payload)  # posts from a thread of its own
        self._threads += [t for t in threading.enumerate() if t not in before]

    def flush(self, timeout_s: float = 10.0) -> None:
        """Let in-flight updates land before the result is returned (it must not be overtaken)."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
