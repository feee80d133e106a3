"""A job's log.txt: what the job page shows. Lines are appended, each stamped (UTC); the training
process, the worker and recovery all write through here, so the log tells the whole story of a job."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path


class RunLog:
    """job_dir/log.txt, appended, one timestamped line per event."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(stamped(message))


def stamped(message: str) -> str:
    return f"[{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S')}] {message}\n"


def log_tail(path: Path, lines: int = 6, max_bytes: int = 8192) -> list[str]:
    """The last `lines` non-empty lines of a log (reads only its end)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]
