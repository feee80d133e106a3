"""A worker killed with SIGKILL leaves its row; a restarted container gives the new worker the same pid. The new
worker's start is its own: the dashboard's idle time and the pod's auto-stop count from it, not from the old one."""

from __future__ import annotations

import os
import time

from studio.upgrade import open_job_store
from studio.workspace import Workspace
from trainer.worker import Worker


def test_a_row_left_by_a_killed_worker_of_the_same_pid_is_not_this_workers_start(make_settings):
    settings = make_settings()
    store = open_job_store(Workspace(settings.root).ensure())
    store.worker_beat(os.getpid(), "busy", "job-from-before")  # the killed worker's row
    with store.write() as conn:
        conn.execute("UPDATE workers SET started_at = ? WHERE pid = ?", (time.time() - 86400, os.getpid()))
    worker = Worker(settings, unload_caption=False)
    worker.store.worker_beat(worker.pid, "idle")
    [row] = store.workers()
    assert time.time() - row["started_at"] < 3600 and row["job_id"] is None
