"""The job store's schema and its migrations, numbered by SQLite's `user_version`.

Version 1 is the first release's table of training jobs; version 2 is the one table of every kind of
job; version 3 gives each job its place in its queue (`queue_key`); version 4 lets a training job name
several datasets (`datasets`); version 5 keeps the seconds of a job's ended runs (`run_s`); version 6 names
each worker by its machine and pid (two pods on one volume may run workers of the same pid). A new
database is made at version 2
and upgraded like any other, so every version's schema is built one way. A database opens at any
older version and is upgraded in one transaction, so a service that starts during the upgrade waits
for it instead of reading half of it. A database newer than this code
is refused with a sentence saying so (an older release must not write into a schema it does not know).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 6


class SchemaTooNew(RuntimeError):
    """studio.db was written by a newer release of the studio."""


V2_JOBS = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    dataset TEXT,
    dataset_version TEXT,
    parent_id TEXT,
    after_id TEXT,
    recipe TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'stopped', 'interrupted')),
    phase TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    eta_s REAL,
    message TEXT,
    error TEXT,
    current TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    details TEXT NOT NULL DEFAULT '{}',
    result TEXT NOT NULL DEFAULT '{}',
    control TEXT,
    resumable INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    child_pid INTEGER,
    heartbeat_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lora_path TEXT,
    webhook_url TEXT,
    idem_key TEXT UNIQUE,
    fingerprint TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    stop_requested_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX jobs_kind_status ON jobs(kind, status, created_at);
CREATE INDEX jobs_dataset ON jobs(dataset, kind, created_at);
CREATE INDEX jobs_parent ON jobs(parent_id);
CREATE INDEX jobs_version ON jobs(dataset_version);
CREATE TABLE IF NOT EXISTS workers (
    pid INTEGER PRIMARY KEY, state TEXT NOT NULL, job_id TEXT, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL
);
"""
V6_WORKERS = """
CREATE TABLE workers (
    machine TEXT NOT NULL, pid INTEGER NOT NULL, state TEXT NOT NULL, job_id TEXT, started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL, PRIMARY KEY (machine, pid)
)"""


def _create(conn: sqlite3.Connection) -> None:
    for statement in V2_JOBS.split(";"):
        if statement.strip():
            conn.execute(statement)


def _to_v2(conn: sqlite3.Connection) -> None:
    """Training jobs move into the table of every kind. 'stopping' becomes running with a stop asked
    for; a v1 job's loss figures move into `details`."""
    conn.execute("ALTER TABLE jobs RENAME TO jobs_v1")
    conn.execute("DROP INDEX IF EXISTS jobs_status")
    _create(conn)
    conn.execute("""
        INSERT INTO jobs (id, kind, name, dataset, recipe, config, status, phase, done, total, eta_s, message,
                          error, details, result, control, resumable, owner, child_pid, heartbeat_at, attempts,
                          lora_path, webhook_url, idem_key, fingerprint, created_at, started_at, stop_requested_at,
                          finished_at, updated_at)
        SELECT id, 'train', name, dataset, recipe, config,
               CASE status WHEN 'stopping' THEN 'running' ELSE status END,
               phase, step, total_steps, eta_s, message, error,
               json_object('loss', loss, 'smooth_loss', smooth_loss, 'it_per_s', it_per_s, 'gpu_mem_gb', gpu_mem_gb),
               COALESCE(result, '{}'),
               CASE WHEN status = 'stopping' THEN COALESCE(control, 'stop') ELSE control END,
               resumable, CASE WHEN worker_pid IS NULL THEN NULL ELSE worker_pid || ':' END, child_pid,
               heartbeat_at, attempts, lora_path, webhook_url, idem_key, fingerprint, created_at, started_at,
               stop_requested_at, finished_at, updated_at
        FROM jobs_v1""")
    conn.execute("DROP TABLE jobs_v1")


def _to_v3(conn: sqlite3.Connection) -> None:
    """Each job's place in its queue: its creation time, earlier once it is moved to the front."""
    conn.execute("ALTER TABLE jobs ADD COLUMN queue_key REAL")
    conn.execute("UPDATE jobs SET queue_key = created_at")
    conn.execute("CREATE INDEX jobs_queue ON jobs(kind, status, queue_key)")


def _to_v4(conn: sqlite3.Connection) -> None:
    """Every dataset a training job reads, with its pinned version and repeats, as a JSON list; empty for a
    job of one dataset (`dataset` and `dataset_version` say which), as every older job is."""
    conn.execute("ALTER TABLE jobs ADD COLUMN datasets TEXT NOT NULL DEFAULT '[]'")


def _to_v5(conn: sqlite3.Connection) -> None:
    """The seconds a job ran in its ended runs, so a job resumed or trained further counts all of them, not
    only its latest run. An ended job's one run so far is what was known; a running one's is counted live."""
    conn.execute("ALTER TABLE jobs ADD COLUMN run_s REAL NOT NULL DEFAULT 0")
    conn.execute("UPDATE jobs SET run_s = MAX(0, COALESCE(finished_at, heartbeat_at, started_at) - started_at)"
                 " WHERE started_at IS NOT NULL AND status != 'running'")


def _to_v6(conn: sqlite3.Connection) -> None:
    """Workers keyed by machine and pid. The table only holds heartbeats of a few seconds: it starts empty, and
    each running worker is back in it at its next beat."""
    conn.execute("DROP TABLE IF EXISTS workers")
    conn.execute(V6_WORKERS)


# MIGRATIONS[n] upgrades a database at version n - 1 to version n.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _to_v2, 3: _to_v3, 4: _to_v4, 5: _to_v5,
                                                               6: _to_v6}


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def current_version(conn: sqlite3.Connection) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0 and _has_table(conn, "jobs"):
        return 1  # the first release did not number its schema
    return version


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had. `conn` is in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = current_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(f"studio.db has job store version {found}, newer than this release knows "
                               f"({SCHEMA_VERSION}): update the studio's code instead of downgrading it.")
        start = found
        if found == 0:
            _create(conn)
            start = 2
        for version in range(start + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found
