"""Job store: atomic claims under concurrency, state transitions, recovery of jobs left by dead workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from studio.workspace import Workspace
from trainer.recovery import reconcile
from trainer.step_dirs import latest_checkpoint_step
from trainer.store import JobStateError, JobStore


@pytest.fixture
def store(settings):
    Workspace(settings.root).ensure()
    return JobStore(Workspace(settings.root).db_path)


def _add(store, n, **kw):
    return [store.create(name=f"job{i}", recipe="zimage-turbo", config={"steps": 5}, dataset="d", **kw)[0]
            for i in range(n)]


def test_two_concurrent_workers_take_each_job_exactly_once(store):
    jobs = _add(store, 40)
    taken: dict[int, list[str]] = {1: [], 2: [], 3: [], 4: []}
    start = threading.Barrier(len(taken))

    def worker(pid):
        mine = JobStore(store.db_path)  # a connection of its own, like a separate worker
        start.wait()
        while (job := mine.claim(pid)) is not None:
            taken[pid].append(job.id)
            mine.finish(job.id, "completed", message="ok")

    threads = [threading.Thread(target=worker, args=(pid,)) for pid in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claimed = [job_id for ids in taken.values() for job_id in ids]
    assert sorted(claimed) == sorted(job.id for job in jobs)
    assert len(set(claimed)) == len(claimed)
    assert all(job.status == "completed" and job.attempts == 1 for job in store.list())


def test_claims_from_two_processes_never_overlap(store):
    _add(store, 20)
    code = ("import sys, json; from trainer.store import JobStore; s = JobStore(sys.argv[1]); ids = [];\n"
            "while (j := s.claim(int(sys.argv[2]))) is not None: ids.append(j.id)\nprint(json.dumps(ids))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.db_path), str(pid)], stdout=subprocess.PIPE,
                              text=True) for pid in (101, 102)]
    results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    claimed = results[0] + results[1]
    assert len(claimed) == 20 and len(set(claimed)) == 20


def test_claim_order_and_dedup(store):
    first, created = store.create(name="a", recipe="r", config={}, dataset="d", fingerprint="same")
    again, created_again = store.create(name="a", recipe="r", config={}, dataset="d", fingerprint="same")
    assert created and not created_again and again.id == first.id
    keyed, _ = store.create(name="b", recipe="r", config={}, dataset="d", idem_key="k1")
    repeat, created_keyed = store.create(name="c", recipe="r", config={"x": 1}, dataset="d", idem_key="k1")
    assert repeat.id == keyed.id and not created_keyed
    assert store.claim(1).id == first.id
    assert store.claim(1).id == keyed.id
    assert store.claim(1) is None


def test_stop_transitions(store):
    queued, running, done = _add(store, 3)
    assert store.request_stop(queued.id).status == "stopped"
    claimed = store.claim(7)
    assert claimed.id == running.id
    assert store.request_stop(running.id).status == "stopping"
    store.finish(store.claim(7).id, "completed")
    with pytest.raises(JobStateError):
        store.request_stop(done.id)
    with pytest.raises(JobStateError):
        store.resume(done.id)
    assert store.resume(queued.id).status == "queued"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_reconcile_requeues_or_fails_jobs_of_dead_workers(store, settings):
    jobs_root = Workspace(settings.root).jobs
    a, b, c = _add(store, 3)
    dead = _dead_pid()
    for _ in range(3):
        store.claim(dead)
    # a has a checkpoint and resumes; b used up its attempts; c was stopping
    ckpt = jobs_root / a.id / "checkpoints" / "step_000004"
    ckpt.mkdir(parents=True)
    (ckpt / "lora.safetensors").write_bytes(b"x")
    (ckpt / "state.pt").write_bytes(b"x")
    assert latest_checkpoint_step(jobs_root / a.id) == 4
    with store.write() as conn:
        conn.execute("UPDATE jobs SET attempts = 3 WHERE id = ?", (b.id,))
    store.request_stop(c.id)
    changed = {job.id: job for job in reconcile(store, jobs_root)}
    assert changed[a.id].status == "queued" and "checkpoint at step 4" in changed[a.id].message
    assert changed[b.id].status == "failed" and "3 times" in changed[b.id].error
    assert changed[c.id].status == "stopped" and changed[c.id].resumable
    assert reconcile(store, jobs_root) == []


def test_live_worker_keeps_its_job(store, settings):
    (job,) = _add(store, 1)
    store.claim(os.getpid())
    store.heartbeat(job.id)
    assert reconcile(store, Workspace(settings.root).jobs) == []
    assert store.get(job.id).status == "running"


def test_writers_wait_instead_of_failing(store):
    (job,) = _add(store, 1)
    other = JobStore(store.db_path)
    errors = []

    def hold_lock():
        with other.write() as conn:
            conn.execute("UPDATE jobs SET message = 'held' WHERE id = ?", (job.id,))
            time.sleep(0.5)

    thread = threading.Thread(target=hold_lock)
    thread.start()
    time.sleep(0.1)
    try:
        store.progress(job.id, {"step": 3, "loss": 0.5})
    except Exception as exc:  # "database is locked" would land here
        errors.append(exc)
    thread.join()
    assert not errors and store.get(job.id).step == 3
