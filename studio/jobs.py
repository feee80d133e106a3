"""The studio's one job store: every long piece of work is a row in one SQLite table.

Imports, auto-captioning, exports and training jobs (and the express lane's chain of them) share one
status vocabulary, progress, ETA and message. Each kind keeps its own executor (a thread pool in the
dataset manager, the worker's child process for training); only the bookkeeping is shared:

    queued -> running -> completed | failed | stopped | interrupted

`stopped` is what the user asked for; `interrupted` is a job whose process ended under it (a restart,
a crash, a pod stop): it can be resumed, and the studio resumes training and express jobs by itself.
A stop is asked for in one place (`request_stop`, which sets `control`); executors poll it.

SQLite in WAL mode lets readers and one writer work at once; every write is a short transaction
(`BEGIN IMMEDIATE` takes the write lock up front, so two writers never deadlock on an upgrade), and
`busy_timeout` makes a writer wait instead of failing with "database is locked". Each thread and
process opens its own connection.
"""

from __future__ import annotations

import time

from studio import host_claim
from studio.job_db import JobDatabase
from studio.job_record import (
    ACTIVE,
    FINISHED,
    JSON_COLUMNS,
    KINDS,
    PROGRESS_ALIASES,
    PROGRESS_COLUMNS,
    STATUSES,
    STOP_CONTROLS,
    Job,
    JobError,
    JobNotFound,
    JobStateError,
    JobStopped,
    dump_json,
    new_job_id,
)
from studio.processes import machine, pid_alive, token_alive
from studio.workspace import Workspace

__all__ = ["ACTIVE", "FINISHED", "KINDS", "STATUSES", "Job", "JobError", "JobNotFound", "JobStateError",
           "JobStopped", "JobStore", "new_job_id"]

# an UPDATE's clause that adds the run ending at its first parameter to a running job's run_s (SQLite reads
# the row's values as they were before the UPDATE)
_RUN_ENDS = ("run_s = run_s + CASE WHEN status = 'running' AND started_at IS NOT NULL"
             " THEN MAX(0, ? - started_at) ELSE 0 END,")


class JobStore(JobDatabase):
    """Jobs in SQLite: reading (studio.job_db) and every change. Safe to share between threads: each thread gets
    its own connection."""

    # -- creating ------------------------------------------------------------------------------
    def create(self, kind: str, *, name: str = "", dataset: str | None = None, dataset_version: str | None = None,
               datasets: list[dict] | None = None, parent_id: str | None = None, after_id: str | None = None,
               recipe: str | None = None, config: dict | None = None, total: int = 0, message: str | None = None,
               owner: str | None = None, webhook_url: str | None = None, idem_key: str | None = None,
               fingerprint: str | None = None, dedup_window_s: float = 10.0) -> tuple[Job, bool]:
        """Insert a queued job; returns (job, created). A repeat of the same request returns the first job."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        now = time.time()
        with self.write() as conn:
            if idem_key:
                row = conn.execute("SELECT * FROM jobs WHERE idem_key = ?", (idem_key,)).fetchone()
                if row:
                    return Job.from_row(row), False
            if fingerprint:
                # a double click, not a job sent again after the first was stopped (or failed at once)
                row = conn.execute("SELECT * FROM jobs WHERE fingerprint = ? AND created_at > ? AND status IN "
                                   "('queued', 'running') ORDER BY created_at DESC LIMIT 1",
                                   (fingerprint, now - dedup_window_s)).fetchone()
                if row:
                    return Job.from_row(row), False
            job_id = new_job_id(kind)
            row = conn.execute(
                "INSERT INTO jobs (id, kind, name, dataset, dataset_version, datasets, parent_id, after_id, recipe,"
                " config, total, message, owner, webhook_url, idem_key, fingerprint, created_at, queue_key, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (job_id, kind, name, dataset, dataset_version, dump_json(datasets or []), parent_id, after_id, recipe,
                 dump_json(config or {}),
                 total, message or "Queued.", owner, webhook_url, idem_key, fingerprint, now, now, now)).fetchone()
        return Job.from_row(row), True

    def restore(self, values: dict) -> int:
        """Insert a job with all its fields as given (history brought over from an older release);
        returns 1, or 0 when a job with that id is already here."""
        values = {"queue_key": values.get("created_at"), **values}  # its place in a queue: when it was made
        values = {key: dump_json(value) if key in JSON_COLUMNS else value for key, value in values.items()}
        names = ", ".join(values)
        with self.write() as conn:
            cur = conn.execute(f"INSERT OR IGNORE INTO jobs ({names}) VALUES ({', '.join('?' * len(values))})",
                               tuple(values.values()))
            return cur.rowcount

    def update(self, job_id: str, **values) -> Job:
        """Set plain fields of a job (what a chain learns later: its dataset version, config, name)."""
        allowed = {"name", "dataset", "dataset_version", "after_id", "config", "total", "message", "result", "attempts"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        values = {key: dump_json(value) if key in JSON_COLUMNS else value for key, value in values.items()}
        sets = ", ".join(f"{key} = ?" for key in values)
        with self.write() as conn:
            conn.execute(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?", (*values.values(), time.time(),
                                                                                  job_id))
        return self.get(job_id)

    # -- the executor's side ---------------------------------------------------------------------
    def claim(self, kind: str, owner: str) -> Job | None:
        """Take the oldest queued job of `kind` whose predecessor (if any) completed: one UPDATE in an
        immediate transaction, so two executors never take the same job."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = 'running', owner = ?, child_pid = NULL, heartbeat_at = ?, started_at = ?,"
                " details = json_remove(details, '$.notices'),"  # what an earlier run noticed is not this run's
                " attempts = attempts + 1, phase = 'starting', message = 'Starting.', error = NULL, control = NULL,"
                " stop_requested_at = NULL, finished_at = NULL, updated_at = ?"
                " WHERE id = (SELECT id FROM jobs AS q WHERE q.status = 'queued' AND q.kind = ? AND (q.after_id IS NULL"
                " OR EXISTS (SELECT 1 FROM jobs AS p WHERE p.id = q.after_id AND p.status = 'completed'))"
                " ORDER BY q.queue_key, q.id LIMIT 1) AND status = 'queued' RETURNING *",
                (owner, now, now, now, kind),
            ).fetchone()
        return Job.from_row(row) if row else None

    def move_to_front(self, job_id: str) -> Job:
        """A queued job runs next (before every other queued job of its kind); 409 when it is not queued."""
        with self.write() as conn:
            row = conn.execute("SELECT kind, status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"There is no job {job_id!r}.")
            if row["status"] != "queued":
                raise JobStateError(f"Only a queued job can be moved; this one is {row['status']}.")
            first = conn.execute("SELECT MIN(queue_key) FROM jobs WHERE status = 'queued' AND kind = ? AND id != ?",
                                 (row["kind"], job_id)).fetchone()[0]
            if first is not None:
                conn.execute("UPDATE jobs SET queue_key = MIN(queue_key, ?), updated_at = ? WHERE id = ?",
                             (first - 1.0, time.time(), job_id))
        return self.get(job_id)

    def start(self, job_id: str, owner: str) -> Job | None:
        """queued -> running for one given job (an executor slot came free); None when it is no longer
        queued (stopped while it waited)."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = 'running', owner = ?, heartbeat_at = ?, started_at = ?,"
                " attempts = attempts + 1, error = NULL, finished_at = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'queued' RETURNING *",
                (owner, now, now, now, job_id)).fetchone()
        return Job.from_row(row) if row else None

    def progress(self, job_id: str, values: dict) -> None:
        """Record a progress report: known columns are set, other values merge into `details`."""
        now = time.time()
        columns, details = {}, {}
        for key, value in values.items():
            key = PROGRESS_ALIASES.get(key, key)
            if key in PROGRESS_COLUMNS:
                if value is not None:
                    columns[key] = value
            elif key == "errors":
                columns["errors"] = dump_json(value)
            elif key not in {"status", "id", "kind"}:
                details[key] = value
        sets = "".join(f"{key} = ?, " for key in columns)
        args = list(columns.values())
        if details:
            sets += "details = json_patch(details, ?), "
            args.append(dump_json(details))
        with self.write() as conn:
            conn.execute(f"UPDATE jobs SET {sets}heartbeat_at = ?, updated_at = ? WHERE id = ?", (*args, now, now,
                                                                                                  job_id))

    def heartbeat(self, job_id: str, child_pid: int | None = None) -> None:
        with self.write() as conn:
            if child_pid is None:
                conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (time.time(), job_id))
            else:
                conn.execute("UPDATE jobs SET heartbeat_at = ?, child_pid = ? WHERE id = ?",
                             (time.time(), child_pid, job_id))

    def finish(self, job_id: str, status: str, *, message: str | None = None, error: str | None = None,
               resumable: bool = False, lora_path: str | None = None, result: dict | None = None,
               ran_until: float | None = None, unless_stopped: bool = False) -> Job:
        """End a job: completed, failed, stopped or interrupted. A failure's error is also its message.
        A running job's run is added to its `run_s`, up to `ran_until` when its process ended earlier
        than now (its last heartbeat, for a job found orphaned after a restart). `unless_stopped`: a job a stop
        was asked for, up to this very write, is left running for its executor to end as stopped."""
        self._end(job_id, status, message=message, error=error, resumable=resumable, lora_path=lora_path,
                  result=result, ran_until=ran_until,
                  where=f" AND COALESCE(control, '') NOT IN {STOP_CONTROLS!r}" if unless_stopped else "")
        return self.get(job_id)

    def _end(self, job_id: str, status: str, *, message: str | None = None, error: str | None = None,
             resumable: bool = False, lora_path: str | None = None, result: dict | None = None,
             ran_until: float | None = None, where: str = "", where_args: tuple = ()) -> bool:
        """finish's one write, only where `where` (more SQL conditions) holds too; whether the job was ended."""
        if status not in FINISHED:
            raise ValueError(f"{status!r} does not end a job")
        now = time.time()
        message = message if message is not None else error
        with self.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = ?, message = ?, error = ?, resumable = ?, lora_path = COALESCE(?, lora_path),"
                " result = COALESCE(?, result), phase = CASE WHEN ? = 'completed' THEN 'done' ELSE phase END,"
                " current = NULL, control = NULL, child_pid = NULL, eta_s = CASE WHEN ? = 'completed' THEN 0 END,"
                f" {_RUN_ENDS} finished_at = ?, updated_at = ? WHERE id = ?{where}",
                (status, message, error, int(resumable), lora_path, dump_json(result) if result is not None else None,
                 status, status, ran_until or now, now, now, job_id, *where_args),
            )
            return cur.rowcount == 1

    def requeue(self, job_id: str, message: str) -> Job:
        """Back into the queue (a training job whose process ended under it continues from its checkpoint)."""
        now = time.time()
        with self.write() as conn:
            conn.execute(f"UPDATE jobs SET {_RUN_ENDS} status = 'queued', message = ?, owner = NULL,"
                         " child_pid = NULL, control = NULL, stop_requested_at = NULL, finished_at = NULL,"
                         " eta_s = NULL, details = json_remove(details, '$.it_per_s'), updated_at = ? WHERE id = ?",
                         (now, message, now, job_id))
        return self.get(job_id)

    # -- the user's side: the one place a stop is decided ----------------------------------------
    def request_stop(self, job_id: str, *, delete: bool = False, reason: str = "Stopping.") -> Job:
        """queued -> stopped at once; running -> a stop is asked for (its executor ends it at the next
        check and records how it ended); a finished job -> JobStateError."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"There is no job {job_id!r}.")
            status = row["status"]
            if status == "queued":
                conn.execute("UPDATE jobs SET status = 'stopped', resumable = 1, message = ?, finished_at = ?,"
                             " updated_at = ? WHERE id = ?", ("Stopped before it started.", now, now, job_id))
            elif status == "running":
                # a delete asked for (another tab) stays one: a later Stop does not take it back
                conn.execute("UPDATE jobs SET control = CASE WHEN control = 'delete' THEN 'delete' ELSE ? END,"
                             " message = ?, stop_requested_at = COALESCE(stop_requested_at, ?), updated_at = ?"
                             " WHERE id = ?", ("delete" if delete else "stop", reason, now, now, job_id))
            else:
                raise JobStateError(f"The job is already {status}; there is nothing to stop.")
        return self.get(job_id)

    def stop_requested(self, job_id: str) -> bool:
        """True when a stop was asked for, or the job is gone (deleted under its executor)."""
        row = self._conn().execute("SELECT control FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is None or row["control"] in STOP_CONTROLS

    def resume(self, job_id: str, message: str = "Queued again: it continues where it ended.", *,
               also_completed: bool = False) -> Job:
        """Back into the queue to continue where it ended (a completed job only when it is given more work)."""
        now = time.time()
        allowed = ("stopped", "failed", "interrupted", "completed") if also_completed else \
            ("stopped", "failed", "interrupted")
        with self.write() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"There is no job {job_id!r}.")
            if row["status"] not in allowed:
                raise JobStateError(f"Only a stopped, failed or interrupted job can be resumed; this one is "
                                    f"{row['status']}.")
            conn.execute("UPDATE jobs SET status = 'queued', error = NULL, control = NULL, resumable = 0,"
                         " owner = NULL, message = ?, attempts = 0, stop_requested_at = NULL, finished_at = NULL,"
                         " eta_s = NULL,"
                         " updated_at = ? WHERE id = ?", (message, now, job_id))
        return self.get(job_id)

    def delete(self, job_id: str) -> bool:
        """Remove a job that is not running; False when it runs (stop it first)."""
        with self.write() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE id = ? AND status != 'running'", (job_id,))
            return cur.rowcount == 1

    def delete_children(self, parent_id: str, kind: str) -> int:
        """The jobs of `kind` under a deleted job (a running one ends first and its executor removes it)."""
        with self.write() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE parent_id = ? AND kind = ? AND status != 'running'",
                               (parent_id, kind))
            return cur.rowcount

    def delete_dataset_jobs(self, dataset: str) -> int:
        """A deleted dataset takes the history of its own jobs with it (training jobs stay)."""
        with self.write() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE dataset = ? AND kind NOT IN ('train', 'express')"
                               " AND status != 'running'", (dataset,))
            return cur.rowcount

    # -- recovery ------------------------------------------------------------------------------
    def owner_alive(self, token: str | None) -> bool:
        """Whether the process holding a job runs: on this machine, looked at; on another pod sharing the volume,
        while that pod's claim on the workspace (next to this database) is fresh (studio.host_claim)."""
        return token_alive(token, lambda name: host_claim.seen(Workspace(self.db_path.parent).state, name))

    def interrupt_orphans(self, kinds: tuple[str, ...], *, is_alive=None) -> list[Job]:
        """The one recovery: jobs of `kinds` held by a process that no longer runs end here. A job that
        was asked to stop is stopped; any other is interrupted and resumable. Returns the jobs changed."""
        is_alive, changed = is_alive or self.owner_alive, []
        for job in self.list(ACTIVE, kind=kinds, limit=100_000):
            if not job.owner or is_alive(job.owner):
                continue  # a queued job nobody took yet, or one whose process still runs
            where = f" at {job.done} of {job.total}" if job.total else ""
            ran_until = job.heartbeat_at  # its last sign of life, not this restart
            if job.control == "delete":
                ending = {"status": "stopped", "message": "Stopped before deletion."}
            elif job.control == "stop":
                ending = {"status": "stopped", "resumable": True,
                          "message": f"Stopped{where}: its process ended while it was stopping."}
            else:
                ending = {"status": "interrupted", "resumable": True,
                          "message": f"Interrupted{where}: the process running it ended (a restart or a crash)."}
            # only while it is still as listed: two processes recovering at once end it (and tell of it) once
            if self._end(job.id, ending.pop("status"), ran_until=ran_until, **ending,
                         where=" AND status = ? AND owner = ?", where_args=(job.status, job.owner)):
                changed.append(self.get(job.id))
        return changed

    # -- workers -------------------------------------------------------------------------------
    # Each row is one worker process of one machine: two pods sharing the volume may both run a worker of pid 42,
    # and each pod's pages tell of its own workers (another machine's pid cannot be looked at from here).
    def worker_beat(self, pid: int, state: str, job_id: str | None = None) -> None:
        now = time.time()
        with self.write() as conn:
            conn.execute("INSERT INTO workers (machine, pid, state, job_id, started_at, heartbeat_at)"
                         " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(machine, pid) DO UPDATE SET state = excluded.state,"
                         " job_id = excluded.job_id, heartbeat_at = excluded.heartbeat_at",
                         (machine(), pid, state, job_id, now, now))

    def worker_gone(self, pid: int) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM workers WHERE machine = ? AND pid = ?", (machine(), pid))

    def workers(self, fresh_s: float = 30.0) -> list[dict]:
        """This machine's workers that reported in the last `fresh_s` seconds and whose process still runs."""
        rows = self._conn().execute("SELECT * FROM workers WHERE machine = ? AND heartbeat_at > ? ORDER BY started_at",
                                    (machine(), time.time() - fresh_s)).fetchall()
        return [dict(row) for row in rows if pid_alive(row["pid"])]
