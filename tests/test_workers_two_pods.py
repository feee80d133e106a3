"""Workers are named by machine and pid: two pods sharing the volume may both run a worker of the same pid (a
container's processes start from the same numbers), and each overwrote the other's row, so each pod's dashboard
flapped between the two states. A database from before (version 5) comes up with the new table."""

from __future__ import annotations

import os
import sqlite3

from studio import job_schema
from studio.jobs import JobStore


def test_the_same_pid_on_two_machines_is_two_workers(tmp_path, monkeypatch):
    store = JobStore(tmp_path / "studio.db")
    pid = os.getpid()  # alive here, as each pod's own worker is to that pod
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    store.worker_beat(pid, "busy", "job-a")
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-b")
    store.worker_beat(pid, "idle")
    assert [(w["machine"], w["state"], w["job_id"]) for w in store.workers()] == [("pod-b", "idle", None)]
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    assert [(w["machine"], w["state"], w["job_id"]) for w in store.workers()] == [("pod-a", "busy", "job-a")]
    store.worker_gone(pid)  # pod a's worker stops: pod b's, of the same pid, stays
    assert store.workers() == []
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-b")
    assert [w["state"] for w in store.workers()] == ["idle"]


def test_a_version_5_database_comes_up_with_workers_named_by_machine(tmp_path, monkeypatch):
    conn = sqlite3.connect(tmp_path / "studio.db", isolation_level=None)
    job_schema._create(conn)
    for upgrade in (job_schema._to_v3, job_schema._to_v4, job_schema._to_v5):  # the previous release's schema
        upgrade(conn)
    conn.execute("PRAGMA user_version = 5")
    conn.execute("INSERT INTO workers (pid, state, started_at, heartbeat_at) VALUES (?, 'idle', 1.0, 1.0)",
                 (os.getpid(),))
    conn.close()
    store = JobStore(tmp_path / "studio.db")
    assert store.upgraded_from == 5 and store.workers() == []  # a heartbeat table: each worker is back at its beat
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    store.worker_beat(os.getpid(), "idle")
    assert [w["machine"] for w in store.workers()] == ["pod-a"]
