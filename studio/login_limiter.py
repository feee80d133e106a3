"""One limit on password guessing, shared by every way a password is tried and every service.

Form login and `Authorization: Bearer` both count their failures here, per client address. The
failures live in a small SQLite file in the workspace's private state folder, so the three services
(separate processes) share one budget: five wrong passwords a minute from one address, then 429.
A wrong password is checked against the budget and counted in one write transaction (`fail`), so
wrong tries sent all at once cannot all pass the check before any of them is counted; a right one
only reads (`retry_after`).
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


class StateStore:
    """A small SQLite file in the workspace's private state folder, one for the three services (separate processes);
    when it cannot be used (full or read-only disk), kept in memory instead, per process, and the log says so."""

    SCHEMA: tuple[str, ...] = ()
    WHAT = "store"

    def __init__(self, path: Path | None):
        self._lock = threading.Lock()
        self._db = None
        if path is not None:
            try:
                self._db = self._open(str(path))
            except sqlite3.Error:
                log.exception("cannot open %s %s; keeping it in memory", self.WHAT, path)
        if self._db is None:
            self._db = self._open(":memory:")

    def _open(self, path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        for statement in self.SCHEMA:
            db.execute(statement)
        return db

    def _run(self, work, write: bool = True):
        """`work(db)`, a write in one transaction (other processes wait for it), on the file or, once that failed,
        in memory."""
        with self._lock:
            try:
                return self._transaction(work, write)
            except sqlite3.Error:
                log.exception("%s failed; keeping it in memory from now on", self.WHAT)
                self._db = self._open(":memory:")
                return self._transaction(work, write)

    def _transaction(self, work, write: bool):
        if not write:
            return work(self._db)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return result


class LoginLimiter(StateStore):
    """Counts wrong passwords per client address; too many in the window are refused for a while."""

    SCHEMA = (SCHEMA, INDEX)
    WHAT = "the login limiter's store"

    def __init__(self, path: Path | None, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S):
        self.max_failures = max_failures
        self.window_s = window_s
        super().__init__(path)

    def _wait(self, db, client: str, now: float) -> int:
        rows = db.execute("SELECT at FROM failures WHERE client = ? AND at > ? ORDER BY at DESC LIMIT ?",
                          (client, now - self.window_s, self.max_failures)).fetchall()
        if len(rows) < self.max_failures:
            return 0
        oldest_counted = rows[-1][0]
        return max(1, int(self.window_s - (now - oldest_counted)) + 1)

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try a password again; 0 when it may try now."""
        return self._run(lambda db: self._wait(db, client, time.time()), write=False)

    def fail(self, client: str) -> int:
        """A wrong password from `client`: 0 when it was within the budget (it is counted: answer 401), else the
        seconds to wait (answer 429; it is not counted, so a refused flood does not lengthen the wait)."""
        def work(db):
            now = time.time()
            db.execute("DELETE FROM failures WHERE at <= ?", (now - self.window_s,))
            wait = self._wait(db, client, now)
            if not wait:
                db.execute("INSERT INTO failures (client, at) VALUES (?, ?)", (client, now))
            return wait
        return self._run(work)

    def reset(self, client: str) -> None:
        self._run(lambda db: db.execute("DELETE FROM failures WHERE client = ?", (client,)))
