"""Reading the studio's job store (studio.jobs): the SQLite connections, one per thread and process, and every
query that only reads. JobStore adds what changes a job.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from studio.job_record import Job, JobNotFound
from studio.job_schema import migrate


class JobDatabase:
    """Jobs in SQLite, read. Safe to share between threads: each thread gets its own connection."""
    def __init__(self, db_path: Path, busy_timeout_s: float = 30.0):
        self.db_path = Path(db_path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.upgraded_from = migrate(self._conn())

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

    def _rows(self, sql: str, args=()) -> list[Job]:
        return [Job.from_row(row) for row in self._conn().execute(sql, args).fetchall()]

    # -- reading -------------------------------------------------------------------------------
    def find(self, job_id: str) -> Job | None:
        found = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return found[0] if found else None

    def get(self, job_id: str) -> Job:
        job = self.find(job_id)
        if job is None:
            raise JobNotFound(f"There is no job {job_id!r}.")
        return job

    def list(self, statuses: tuple[str, ...] | None = None, *, kind: str | tuple[str, ...] | None = None,
             dataset: str | None = None, parent_id: str | None = None, limit: int = 200) -> list[Job]:
        """Newest first, filtered by any of status, kind, dataset and parent."""
        where, args = [], []
        kinds = (kind,) if isinstance(kind, str) else kind
        for column, values in (("status", statuses), ("kind", kinds)):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                args.extend(values)
        for column, value in (("dataset", dataset), ("parent_id", parent_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return self._rows(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit))

    def holders(self, kind: str, key: str, value: str, *, field: str = "result") -> list[str]:
        """Ids of the jobs of `kind` whose result (or config) has `key` equal to `value` (which job holds a
        file, say), newest first."""
        if field not in ("result", "config"):
            raise ValueError(f"holders looks in a job's result or config, not {field!r}")
        sql = (f"SELECT id FROM jobs WHERE kind = ?"
               f" AND CASE WHEN json_valid({field}) THEN json_extract({field}, '$.' || ?) END = ?"
               " ORDER BY created_at DESC, id DESC")
        rows = self._conn().execute(sql, (kind, key, value)).fetchall()
        return [row["id"] for row in rows]

    def latest(self, kind: str | tuple[str, ...], dataset: str) -> Job | None:
        found = self.list(kind=kind, dataset=dataset, limit=1)
        return found[0] if found else None

    def queue(self, kind: str = "train") -> list[Job]:
        """Queued jobs of a kind in the order they will run."""
        return self._rows("SELECT * FROM jobs WHERE status = 'queued' AND kind = ? ORDER BY queue_key, id", (kind,))

    def count(self, statuses: tuple[str, ...], kind: str | None = None, *, dataset: str | None = None,
              work: bool = False) -> int:
        """Jobs in `statuses` (of `kind`, on `dataset`). With `work`, not an express run still waiting for its
        files: nothing runs for it until they arrive, and one left by a closed tab must not keep the pod busy (nor
        from stopping when the queue is done)."""
        sql = f"SELECT COUNT(*) FROM jobs WHERE status IN ({','.join('?' * len(statuses))})"
        args = list(statuses)
        for column, value in (("kind", kind), ("dataset", dataset)):
            if value:
                sql += f" AND {column} = ?"
                args.append(value)
        if work:
            sql += " AND NOT (kind = 'express' AND phase IS 'upload')"
        return self._conn().execute(sql, args).fetchone()[0]

    def version(self, kind: str | None = None) -> float:
        """Changes whenever a job (of `kind`) changes: what event streams watch."""
        sql, args = "SELECT MAX(updated_at), COUNT(*) FROM jobs", ()
        if kind:
            sql, args = sql + " WHERE kind = ?", (kind,)
        row = self._conn().execute(sql, args).fetchone()
        return (row[0] or 0.0) + row[1]

    def versions_in_use(self) -> dict[str, list[Job]]:
        """Dataset versions that a job may still read (queued, running, or resumable), with those jobs."""
        rows = self._rows("SELECT * FROM jobs WHERE (dataset_version IS NOT NULL OR datasets != '[]')"
                          " AND (status IN ('queued', 'running')"
                          " OR (status IN ('stopped', 'failed', 'interrupted') AND resumable = 1))")
        used: dict[str, list[Job]] = {}
        for job in rows:
            for version in dict.fromkeys(source["version"] for source in job.sources if source.get("version")):
                used.setdefault(version, []).append(job)
        return used
