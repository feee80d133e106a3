"""One limit on password guessing, shared by every way a password is tried and every service.

Form login and `Authorization: Bearer` both count their failures here, per client address. The
failures live in a small SQLite file in the workspace's private state folder, so the three services
(separate processes) share one budget: five wrong passwords a minute from one address, then 429.
If that file cannot be used (full or read-only disk) the limiter keeps counting in memory, per
process, and says so in the log: guessing stays limited and the studio stays usable.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0
SCHEMA = "CREATE TABLE IF NOT EXISTS failures (client TEXT NOT NULL, at REAL NOT NULL)"
INDEX = "CREATE INDEX IF NOT EXISTS failures_client ON failures (client, at)"


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    db.execute(SCHEMA)
    db.execute(INDEX)
    return db


class LoginLimiter:
    """Counts wrong passwords per client address; too many in the window are refused for a while."""

    def __init__(self, path: Path | None, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S):
        self.max_failures = max_failures
        self.window_s = window_s
        self._lock = threading.Lock()
        self._db = None
        if path is not None:
            try:
                self._db = _open(str(path))
            except sqlite3.Error:
                log.exception("cannot open the login limiter's store %s; counting failures in memory", path)
        if self._db is None:
            self._db = _open(":memory:")

    def _run(self, sql: str, params: tuple) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error:
                log.exception("the login limiter's store failed; counting failures in memory from now on")
                self._db = _open(":memory:")
                return self._db.execute(sql, params).fetchall()

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try a password again; 0 when it may try now."""
        now = time.time()
        rows = self._run("SELECT at FROM failures WHERE client = ? AND at > ? ORDER BY at DESC LIMIT ?",
                         (client, now - self.window_s, self.max_failures))
        if len(rows) < self.max_failures:
            return 0
        oldest_counted = rows[-1][0]
        return max(1, int(self.window_s - (now - oldest_counted)) + 1)

    def fail(self, client: str) -> None:
        now = time.time()
        self._run("DELETE FROM failures WHERE at <= ?", (now - self.window_s,))
        self._run("INSERT INTO failures (client, at) VALUES (?, ?)", (client, now))

    def reset(self, client: str) -> None:
        self._run("DELETE FROM failures WHERE client = ?", (client,))
