"""The job store: one SQLite table of training jobs, shared by the web app, the worker and its child.

SQLite in WAL mode lets readers and one writer work at once; every write is a short transaction
(`BEGIN IMMEDIATE` takes the write lock up front, so two writers never deadlock on an upgrade), and
`busy_timeout` makes a writer wait instead of failing with "database is locked". Each thread and
process opens its own connection.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from studio.processes import pid_alive

STATUSES = ("queued", "running", "stopping", "completed", "failed", "stopped")
ACTIVE = ("running", "stopping")
FINISHED = ("completed", "failed", "stopped")
PROGRESS_FIELDS = ("phase", "step", "total_steps", "loss", "smooth_loss", "it_per_s", "eta_s", "gpu_mem_gb", "message")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    recipe TEXT NOT NULL,
    config TEXT NOT NULL,
    dataset TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    phase TEXT,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    loss REAL,
    smooth_loss REAL,
    it_per_s REAL,
    eta_s REAL,
    gpu_mem_gb REAL,
    message TEXT,
    error TEXT,
    webhook_url TEXT,
    idem_key TEXT UNIQUE,
    fingerprint TEXT,
    control TEXT,
    resumable INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    child_pid INTEGER,
    heartbeat_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lora_path TEXT,
    result TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    stop_requested_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at);
CREATE TABLE IF NOT EXISTS workers (
    pid INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    job_id TEXT,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""


class JobNotFound(LookupError):
    """No job has that id."""


class JobStateError(RuntimeError):
    """The job is not in a state that allows the request (answered as 409)."""


@dataclass
class Job:
    id: str
    name: str
    recipe: str
    config: dict
    dataset: str
    status: str
    phase: str | None = None
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    smooth_loss: float | None = None
    it_per_s: float | None = None
    eta_s: float | None = None
    gpu_mem_gb: float | None = None
    message: str | None = None
    error: str | None = None
    webhook_url: str | None = None
    idem_key: str | None = None
    fingerprint: str | None = None
    control: str | None = None
    resumable: bool = False
    worker_pid: int | None = None
    child_pid: int | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    lora_path: str | None = None
    result: dict = field(default_factory=dict)
    created_at: float = 0.0
    started_at: float | None = None
    stop_requested_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["config"] = json.loads(data["config"] or "{}")
        data["result"] = json.loads(data["result"] or "{}")
        data["resumable"] = bool(data["resumable"])
        return cls(**data)

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def public(self) -> dict:
        """What the API shows (no idempotency key or fingerprint)."""
        out = {key: value for key, value in self.__dict__.items() if key not in {"idem_key", "fingerprint"}}
        out["progress"] = round(self.progress, 4)
        out["lora_file"] = Path(self.lora_path).name if self.lora_path else None
        return out


def new_job_id() -> str:
    """Sortable and readable: the creation time plus a random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class JobStore:
    """Jobs in SQLite. Safe to share between threads: each thread gets its own connection."""

    def __init__(self, db_path: Path, busy_timeout_s: float = 30.0):
        self.db_path = Path(db_path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(SCHEMA)

    # -- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction that holds the write lock from its first statement."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _one(self, sql: str, args=()) -> Job | None:
        row = self._conn().execute(sql, args).fetchone()
        return Job.from_row(row) if row else None

    # -- reading -------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        job = self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if job is None:
            raise JobNotFound(f"There is no job {job_id!r}.")
        return job

    def find(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list(self, statuses: tuple[str, ...] | None = None, limit: int = 200) -> list[Job]:
        sql, args = "SELECT * FROM jobs", []
        if statuses:
            sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        return [Job.from_row(row) for row in self._conn().execute(sql, args).fetchall()]

    def queue(self) -> list[Job]:
        rows = self._conn().execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at, id").fetchall()
        return [Job.from_row(row) for row in rows]

    def count(self, statuses: tuple[str, ...]) -> int:
        sql = f"SELECT COUNT(*) FROM jobs WHERE status IN ({','.join('?' * len(statuses))})"
        return self._conn().execute(sql, statuses).fetchone()[0]

    def version(self) -> float:
        """Changes whenever any job changes: what the event stream watches."""
        row = self._conn().execute("SELECT MAX(updated_at), COUNT(*) FROM jobs").fetchone()
        return (row[0] or 0.0) + row[1]

    # -- creating ------------------------------------------------------------------------------
    def create(self, *, name: str, recipe: str, config: dict, dataset: str, webhook_url: str | None = None,
               idem_key: str | None = None, fingerprint: str | None = None, dedup_window_s: float = 10.0,
               total_steps: int = 0) -> tuple[Job, bool]:
        """Insert a queued job; returns (job, created). A repeat of the same request returns the first job."""
        now = time.time()
        with self.write() as conn:
            if idem_key:
                row = conn.execute("SELECT * FROM jobs WHERE idem_key = ?", (idem_key,)).fetchone()
                if row:
                    return Job.from_row(row), False
            if fingerprint:
                row = conn.execute("SELECT * FROM jobs WHERE fingerprint = ? AND created_at > ? "
                                   "ORDER BY created_at DESC LIMIT 1", (fingerprint, now - dedup_window_s)).fetchone()
                if row:
                    return Job.from_row(row), False
            job_id = new_job_id()
            conn.execute(
                "INSERT INTO jobs (id, name, recipe, config, dataset, status, total_steps, webhook_url, idem_key,"
                " fingerprint, message, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (job_id, name, recipe, json.dumps(config), dataset, total_steps, webhook_url, idem_key, fingerprint,
                 "Waiting for the worker.", now, now),
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row), True

    # -- the worker's side ---------------------------------------------------------------------
    def claim(self, worker_pid: int) -> Job | None:
        """Take the oldest queued job atomically: one UPDATE inside an immediate transaction."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = 'running', worker_pid = ?, child_pid = NULL, heartbeat_at = ?,"
                " started_at = ?, attempts = attempts + 1, phase = 'starting', message = 'Starting.', error = NULL,"
                " control = NULL, stop_requested_at = NULL, finished_at = NULL, updated_at = ?"
                " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1)"
                " AND status = 'queued' RETURNING *",
                (worker_pid, now, now, now),
            ).fetchone()
        return Job.from_row(row) if row else None

    def progress(self, job_id: str, values: dict) -> None:
        """Record a progress report from the engine (unknown keys are ignored)."""
        now = time.time()
        fields = {key: values[key] for key in PROGRESS_FIELDS if key in values and values[key] is not None}
        sets = ", ".join(f"{key} = ?" for key in fields)
        sql = "UPDATE jobs SET " + (sets + ", " if sets else "") + "heartbeat_at = ?, updated_at = ? WHERE id = ?"
        with self.write() as conn:
            conn.execute(sql, (*fields.values(), now, now, job_id))

    def heartbeat(self, job_id: str, child_pid: int | None = None) -> None:
        with self.write() as conn:
            if child_pid is None:
                conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (time.time(), job_id))
            else:
                conn.execute("UPDATE jobs SET heartbeat_at = ?, child_pid = ? WHERE id = ?",
                             (time.time(), child_pid, job_id))

    def finish(self, job_id: str, status: str, *, message: str | None = None, error: str | None = None,
               resumable: bool = False, lora_path: str | None = None, result: dict | None = None) -> Job:
        """End a job: completed, failed or stopped."""
        assert status in FINISHED, status
        now = time.time()
        with self.write() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, message = ?, error = ?, resumable = ?, lora_path = COALESCE(?, lora_path),"
                " result = COALESCE(?, result), phase = CASE WHEN ? = 'completed' THEN 'done' ELSE phase END,"
                " child_pid = NULL, eta_s = NULL, finished_at = ?, updated_at = ? WHERE id = ?",
                (status, message, error, int(resumable), lora_path, json.dumps(result) if result is not None else None,
                 status, now, now, job_id),
            )
        return self.get(job_id)

    def requeue(self, job_id: str, message: str) -> Job:
        now = time.time()
        with self.write() as conn:
            conn.execute("UPDATE jobs SET status = 'queued', message = ?, worker_pid = NULL, child_pid = NULL,"
                         " control = NULL, stop_requested_at = NULL, eta_s = NULL, it_per_s = NULL, updated_at = ?"
                         " WHERE id = ?", (message, now, job_id))
        return self.get(job_id)

    # -- the user's side -----------------------------------------------------------------------
    def request_stop(self, job_id: str, *, delete: bool = False, reason: str = "Stopping: saving a checkpoint.") -> Job:
        """queued -> stopped at once; running -> stopping (the worker finishes it); finished -> JobStateError."""
        now = time.time()
        control = "delete" if delete else "stop"
        with self.write() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"There is no job {job_id!r}.")
            status = row["status"]
            if status == "queued":
                conn.execute("UPDATE jobs SET status = 'stopped', resumable = 1, message = ?, finished_at = ?,"
                             " updated_at = ? WHERE id = ?", ("Cancelled before it started.", now, now, job_id))
            elif status in ACTIVE:
                conn.execute("UPDATE jobs SET status = 'stopping', control = ?, message = ?,"
                             " stop_requested_at = COALESCE(stop_requested_at, ?), updated_at = ? WHERE id = ?",
                             (control, reason, now, now, job_id))
            else:
                raise JobStateError(f"The job is already {status}; there is nothing to stop.")
        return self.get(job_id)

    def resume(self, job_id: str) -> Job:
        now = time.time()
        with self.write() as conn:
            row = conn.execute("SELECT status, resumable FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"There is no job {job_id!r}.")
            if row["status"] not in ("stopped", "failed"):
                raise JobStateError(f"Only a stopped or failed job can be resumed; this one is {row['status']}.")
            conn.execute("UPDATE jobs SET status = 'queued', error = NULL, control = NULL, resumable = 0,"
                         " message = 'Waiting for the worker (resumes from the last checkpoint).', attempts = 0,"
                         " stop_requested_at = NULL, finished_at = NULL, eta_s = NULL, updated_at = ? WHERE id = ?",
                         (now, job_id))
        return self.get(job_id)

    def delete(self, job_id: str) -> bool:
        """Remove a job that is not active; False when it is running (stop it first)."""
        with self.write() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE id = ? AND status NOT IN ('running', 'stopping')", (job_id,))
            return cur.rowcount == 1

    # -- workers -------------------------------------------------------------------------------
    def worker_beat(self, pid: int, state: str, job_id: str | None = None) -> None:
        now = time.time()
        with self.write() as conn:
            conn.execute("INSERT INTO workers (pid, state, job_id, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)"
                         " ON CONFLICT(pid) DO UPDATE SET state = excluded.state, job_id = excluded.job_id,"
                         " heartbeat_at = excluded.heartbeat_at", (pid, state, job_id, now, now))

    def worker_gone(self, pid: int) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM workers WHERE pid = ?", (pid,))

    def workers(self, fresh_s: float = 30.0) -> list[dict]:
        """Workers that reported in the last `fresh_s` seconds and whose process still runs."""
        rows = self._conn().execute("SELECT * FROM workers WHERE heartbeat_at > ? ORDER BY started_at",
                                    (time.time() - fresh_s,)).fetchall()
        return [dict(row) for row in rows if pid_alive(row["pid"])]
