"""The one job store: atomic claims under concurrency, one status vocabulary for every kind, chains,
the one stop path, and the one recovery of jobs whose process died."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from studio.jobs import JobNotFound, JobStateError, JobStore
from studio.processes import process_token
from studio.workspace import Workspace
from trainer.recovery import reconcile
from trainer.step_dirs import latest_checkpoint_step


@pytest.fixture
def store(settings):
    Workspace(settings.root).ensure()
    return JobStore(Workspace(settings.root).db_path)


def _add(store, n, kind="train", **kw):
    return [store.create(kind, name=f"job{i}", recipe="zimage-turbo", config={"steps": 5}, dataset="d", **kw)[0]
            for i in range(n)]


def _dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{proc.pid}:1"


def test_two_concurrent_workers_take_each_job_exactly_once(store):
    jobs = _add(store, 40)
    taken: dict[str, list[str]] = {f"{pid}:x": [] for pid in (1, 2, 3, 4)}
    start = threading.Barrier(len(taken))

    def worker(owner):
        mine = JobStore(store.db_path)  # a connection of its own, like a separate worker
        start.wait()
        while (job := mine.claim("train", owner)) is not None:
            taken[owner].append(job.id)
            mine.finish(job.id, "completed", message="ok")

    threads = [threading.Thread(target=worker, args=(owner,)) for owner in taken]
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
    code = ("import sys, json; from studio.jobs import JobStore; s = JobStore(sys.argv[1]); ids = [];\n"
            "while (j := s.claim('train', sys.argv[2])) is not None: ids.append(j.id)\nprint(json.dumps(ids))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.db_path), owner], stdout=subprocess.PIPE,
                              text=True) for owner in ("101:a", "102:b")]
    results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    claimed = results[0] + results[1]
    assert len(claimed) == 20 and len(set(claimed)) == 20


def test_claim_order_dedup_and_kinds(store):
    first, created = store.create("train", name="a", recipe="r", dataset="d", fingerprint="same")
    again, created_again = store.create("train", name="a", recipe="r", dataset="d", fingerprint="same")
    assert created and not created_again and again.id == first.id
    stopped, _ = store.create("train", name="s", recipe="r", dataset="d", fingerprint="stopped at once")
    store.request_stop(stopped.id)  # sent again after a stop: a new job, not the stopped one
    assert store.create("train", name="s", recipe="r", dataset="d", fingerprint="stopped at once")[1]
    store.delete(store.queue()[-1].id)
    keyed, _ = store.create("train", name="b", recipe="r", dataset="d", idem_key="k1")
    repeat, created_keyed = store.create("train", name="c", recipe="r", config={"x": 1}, dataset="d", idem_key="k1")
    assert repeat.id == keyed.id and not created_keyed
    caption, _ = store.create("caption", dataset="d", total=3)
    assert caption.id.startswith("caption-") and caption.status == "queued"
    assert store.claim("train", "1:a").id == first.id
    assert store.claim("train", "1:a").id == keyed.id
    assert store.claim("train", "1:a") is None  # a caption job is not the worker's
    assert store.latest("caption", "d").id == caption.id
    with pytest.raises(ValueError):
        store.create("bake", dataset="d")


def test_a_chained_stage_waits_for_its_predecessor(store):
    export, _ = store.create("export", dataset="d")
    train, _ = store.create("train", dataset="d", after_id=export.id)
    assert store.claim("train", "1:a") is None
    store.start(export.id, "2:b")
    assert store.claim("train", "1:a") is None
    store.finish(export.id, "completed")
    assert store.claim("train", "1:a").id == train.id


def test_one_status_vocabulary_and_one_stop_path(store):
    queued, running, done = _add(store, 3)
    assert store.request_stop(queued.id).status == "stopped"
    claimed = store.claim("train", "7:a")
    assert claimed.id == running.id and not store.stop_requested(running.id)
    stopping = store.request_stop(running.id)
    assert stopping.status == "running" and stopping.stopping and stopping.public()["stopping"]
    assert store.stop_requested(running.id)
    store.finish(store.claim("train", "7:a").id, "completed")
    with pytest.raises(JobStateError):
        store.request_stop(done.id)
    with pytest.raises(JobStateError):
        store.resume(done.id)
    assert store.resume(queued.id).status == "queued"
    with pytest.raises(ValueError):
        store.finish(running.id, "stopping")
    with store.write() as conn, pytest.raises(Exception, match="CHECK"):
        conn.execute("UPDATE jobs SET status = 'done' WHERE id = ?", (done.id,))


def test_progress_keeps_columns_and_details(store):
    (job,) = _add(store, 1)
    store.progress(job.id, {"step": 3, "total_steps": 10, "loss": 0.5, "phase": "training", "eta_s": 7.0})
    store.progress(job.id, {"step": 4, "smooth_loss": 0.4})
    found = store.get(job.id)
    assert (found.done, found.total, found.phase, found.eta_s) == (4, 10, "training", 7.0)
    assert found.details == {"loss": 0.5, "smooth_loss": 0.4}
    public = found.public()
    assert public["step"] == 4 and public["total_steps"] == 10 and public["loss"] == 0.5
    assert public["progress"] == 0.4 and "owner" not in public and "idem_key" not in public


def test_the_one_recovery_interrupts_jobs_of_dead_processes(store):
    dead, alive = _dead_owner(), process_token()
    orphan, stopping, deleting, live, waiting = _add(store, 5, kind="caption")
    for job, owner in ((orphan, dead), (stopping, dead), (deleting, dead), (live, alive)):
        store.start(job.id, owner)
    store.progress(orphan.id, {"done": 2, "total": 5})
    store.request_stop(stopping.id)
    store.request_stop(deleting.id, delete=True)
    changed = {job.id: job for job in store.interrupt_orphans(("caption",))}
    assert set(changed) == {orphan.id, stopping.id, deleting.id}
    assert changed[orphan.id].status == "interrupted" and changed[orphan.id].resumable
    assert "at 2 of 5" in changed[orphan.id].message
    assert changed[stopping.id].status == "stopped" and changed[stopping.id].resumable
    assert changed[deleting.id].status == "stopped" and not changed[deleting.id].resumable
    assert store.get(live.id).status == "running" and store.get(waiting.id).status == "queued"
    assert store.interrupt_orphans(("caption",)) == []


def test_two_processes_recovering_at_once_end_a_dead_job_once(store):
    """Two processes that find the same dead job (the web app and the worker, both started by one restart) each
    ended it, and each told its webhook: the second only finds it ended already."""
    (job,) = _add(store, 1, kind="caption")
    store.start(job.id, _dead_owner())
    other, seen_by_other = JobStore(store.db_path), []

    def dead_and_the_other_recovers_meanwhile(_owner):
        if not seen_by_other:
            seen_by_other.append(other.interrupt_orphans(("caption",)))
        return False

    assert store.interrupt_orphans(("caption",), is_alive=dead_and_the_other_recovers_meanwhile) == []
    assert [j.id for j in seen_by_other[0]] == [job.id]
    assert store.get(job.id).status == "interrupted"


def test_a_reused_pid_does_not_keep_a_dead_job_alive(store):
    (job,) = _add(store, 1, kind="export")
    store.start(job.id, f"{os.getpid()}:1")  # this pid, but a process that started at another time
    assert [j.id for j in store.interrupt_orphans(("export",))] == [job.id]


def test_reconcile_requeues_or_fails_training_jobs_of_dead_workers(store, settings):
    jobs_root = Workspace(settings.root).jobs
    a, b, c = _add(store, 3)
    dead = _dead_owner()
    for _ in range(3):
        store.claim("train", dead)
    # a has a checkpoint and resumes; b used up its attempts; c was stopping
    ckpt = jobs_root / a.id / "checkpoints" / "step_000004"
    ckpt.mkdir(parents=True)
    (ckpt / "lora.safetensors").write_bytes(b"x")
    (ckpt / "state.pt").write_bytes(b"x")
    assert latest_checkpoint_step(jobs_root / a.id) == 4
    store.update(b.id, attempts=3)
    store.request_stop(c.id)
    changed = {job.id: job for job in reconcile(store, jobs_root)}
    assert changed[a.id].status == "queued" and "checkpoint at step 4" in changed[a.id].message
    assert changed[b.id].status == "failed" and "3 times" in changed[b.id].error and changed[b.id].resumable
    assert changed[c.id].status == "stopped" and changed[c.id].resumable
    assert changed[c.id].message.endswith("its process ended while it was stopping. Resume starts again from the "
                                          "beginning (no checkpoint was saved yet).")
    assert reconcile(store, jobs_root) == []


def test_a_job_being_deleted_when_its_worker_died_goes_to_recently_deleted(store, settings):
    from trainer import trash

    workspace = Workspace(settings.root).ensure()
    job, kept = _add(store, 2)
    dead = _dead_owner()
    store.claim("train", dead)
    store.claim("train", dead)
    (workspace.job_dir(job.id) / "samples").mkdir(parents=True)
    store.request_stop(job.id, delete=True)  # Delete pressed; the worker died before it could stop the run
    changed = reconcile(store, workspace.jobs, workspace=workspace)
    assert [j.id for j in changed] == [kept.id] and store.find(job.id) is None
    (entry,) = [e for e in trash.entries(workspace) if e["kind"] == "job"]
    assert entry["name"] == job.name and not workspace.job_dir(job.id).exists()


def test_jobs_a_dead_worker_was_training_go_on_first(store, settings):
    """Two workers (two GPUs) died under their jobs; a job queued meanwhile waits behind both, which keep their
    order."""
    first, second = _add(store, 2)
    dead = _dead_owner()
    store.claim("train", dead)
    store.claim("train", dead)
    (later,) = _add(store, 1)  # say, Train more steps on an older job
    store.move_to_front(later.id)
    reconcile(store, Workspace(settings.root).jobs)
    assert [job.id for job in store.queue()] == [first.id, second.id, later.id]


def test_live_worker_keeps_its_job(store, settings):
    (job,) = _add(store, 1)
    store.claim("train", process_token())
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


def test_versions_in_use_are_those_a_job_may_still_read(store):
    running, resumable, done, dead_end = _add(store, 4)
    for job, version in ((running, "a" * 16), (resumable, "b" * 16), (done, "c" * 16), (dead_end, "d" * 16)):
        store.update(job.id, dataset_version=version)
    for _ in range(4):
        store.claim("train", "1:x")
    store.finish(resumable.id, "stopped", resumable=True)
    store.finish(done.id, "completed")
    store.finish(dead_end.id, "failed", resumable=False)
    assert set(store.versions_in_use()) == {"a" * 16, "b" * 16}


def test_every_dataset_of_a_job_keeps_its_version_in_use(store):
    mix = [{"name": "close", "version": "e" * 16, "repeats": 3}, {"name": "wide", "version": "f" * 16, "repeats": 1}]
    job, _ = store.create("train", dataset="close", dataset_version="e" * 16, datasets=mix)
    assert store.get(job.id).datasets == mix and store.get(job.id).sources == mix
    one, _ = store.create("train", dataset="solo", dataset_version="9" * 16)
    assert store.get(one.id).datasets == []
    assert store.get(one.id).sources == [{"name": "solo", "version": "9" * 16, "repeats": 1}]
    used = store.versions_in_use()
    assert [j.id for j in used["e" * 16]] == [job.id] and [j.id for j in used["f" * 16]] == [job.id]
    assert job.public()["datasets"] == mix


def test_a_queued_job_can_run_next(store):
    first, second, third = (store.create("train", name=n, recipe="r", dataset="d")[0] for n in "abc")
    caption, _ = store.create("caption", dataset="d")
    assert store.move_to_front(third.id).status == "queued"
    assert [job.id for job in store.queue()] == [third.id, first.id, second.id]
    assert store.move_to_front(third.id).queue_key == store.get(third.id).queue_key  # first already: no change
    assert [job.id for job in store.queue("caption")] == [caption.id]  # other kinds keep their own queue
    assert store.claim("train", "1:a").id == third.id
    with pytest.raises(JobStateError):
        store.move_to_front(third.id)  # running
    with pytest.raises(JobNotFound):
        store.move_to_front("nope")
    # a stopped job resumed later keeps the place it had
    store.finish(third.id, "stopped", resumable=True)
    store.resume(third.id)
    assert [job.id for job in store.queue()] == [third.id, first.id, second.id]


def test_a_version_2_database_gets_queue_places_in_creation_order(tmp_path):
    import sqlite3

    from studio import job_schema

    conn = sqlite3.connect(tmp_path / "studio.db", isolation_level=None)
    job_schema._create(conn)  # the version 2 table, as the previous release made it
    conn.execute("PRAGMA user_version = 2")
    for index, job_id in enumerate(("b-later", "a-earlier")):
        conn.execute("INSERT INTO jobs (id, kind, created_at, updated_at) VALUES (?, 'train', ?, ?)",
                     (job_id, 100.0 - index, 100.0))
    conn.close()
    store = JobStore(tmp_path / "studio.db")
    assert [job.id for job in store.queue()] == ["a-earlier", "b-later"]
    assert store.get("b-later").queue_key == 100.0
    assert store._conn().execute("PRAGMA user_version").fetchone()[0] == job_schema.SCHEMA_VERSION


def test_a_version_3_database_gets_an_empty_dataset_list_for_every_job(tmp_path):
    import sqlite3

    from studio import job_schema

    conn = sqlite3.connect(tmp_path / "studio.db", isolation_level=None)
    job_schema._create(conn)
    job_schema._to_v3(conn)  # the previous release's schema
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO jobs (id, kind, dataset, dataset_version, created_at, queue_key, updated_at)"
                 " VALUES ('old', 'train', 'cats', ?, 1.0, 1.0, 1.0)", ("a" * 16,))
    conn.close()
    store = JobStore(tmp_path / "studio.db")
    assert store.upgraded_from == 3
    old = store.get("old")
    assert old.datasets == [] and old.sources == [{"name": "cats", "version": "a" * 16, "repeats": 1}]
    assert list(store.versions_in_use()) == ["a" * 16]


def test_every_run_of_a_job_counts_in_its_run_time(store, monkeypatch):
    """Resumed, restarted, interrupted and trained further: the job's run time is the sum of its runs, and
    an orphan's run ends at its last heartbeat, not at the restart that found it."""
    clock = [1000.0]
    monkeypatch.setattr("studio.jobs.time.time", lambda: clock[0])

    def at(seconds, action, *args, **kw):
        clock[0] = seconds
        return action(*args, **kw)

    (job,) = _add(store, 1)
    at(1000, store.claim, "train", process_token())
    assert store.get(job.id).run_s == 0  # the running run counts live, from started_at
    at(1100, store.finish, job.id, "stopped", resumable=True)
    at(1500, store.resume, job.id)
    assert store.get(job.id).run_s == 100  # waiting in the queue adds nothing
    at(1600, store.claim, "train", process_token())
    at(1650, store.requeue, job.id, "Its process ended; it continues.")
    dead = _dead_owner()
    at(1700, store.claim, "train", dead)
    at(1710, store.heartbeat, job.id)
    at(2000, store.interrupt_orphans, ("train",))
    assert store.get(job.id).run_s == 160  # 100 + 50 + 10: the restart came 290 s after its last heartbeat
    at(2050, store.resume, job.id)
    at(2100, store.claim, "train", process_token())
    done = at(2200, store.finish, job.id, "completed")
    assert done.run_s == 260 and done.public()["run_s"] == 260
    at(3000, store.resume, job.id, also_completed=True)  # Train more steps
    at(3000, store.claim, "train", process_token())
    assert at(3050, store.finish, job.id, "completed").run_s == 310
    at(3100, store.finish, job.id, "failed", error="finished twice")  # an ended job adds nothing more
    assert store.get(job.id).run_s == 310
    (queued,) = _add(store, 1)
    at(4000, store.request_stop, queued.id)
    assert store.get(queued.id).run_s == 0


def test_a_version_4_database_keeps_the_run_time_its_jobs_had(tmp_path):
    import sqlite3

    from studio import job_schema

    conn = sqlite3.connect(tmp_path / "studio.db", isolation_level=None)
    job_schema._create(conn)
    for upgrade in (job_schema._to_v3, job_schema._to_v4):  # the previous release's schema
        upgrade(conn)
    conn.execute("PRAGMA user_version = 4")
    rows = (("done", "completed", 10.0, 40.0, 70.0), ("resumed", "queued", 10.0, 40.0, None),
            ("running", "running", 10.0, 40.0, None), ("new", "queued", None, None, None))
    for job_id, status, started, beat, finished in rows:
        conn.execute("INSERT INTO jobs (id, kind, status, started_at, heartbeat_at, finished_at, created_at,"
                     " queue_key, updated_at) VALUES (?, 'train', ?, ?, ?, ?, 1.0, 1.0, 1.0)",
                     (job_id, status, started, beat, finished))
    conn.close()
    store = JobStore(tmp_path / "studio.db")
    assert store.upgraded_from == 4
    assert {job_id: store.get(job_id).run_s for job_id, *_ in rows} == {"done": 60, "resumed": 30, "running": 0,
                                                                          "new": 0}


def test_a_new_run_starts_without_the_last_runs_notices(store):
    (job,) = _add(store, 1)
    store.claim("train", process_token())
    store.progress(job.id, {"notices": ["Without its trigger word the LoRA still makes 100% of its change."],
                            "loss": 0.4})
    store.finish(job.id, "completed")
    assert store.get(job.id).details["notices"]  # the finished job keeps what its run noticed
    store.resume(job.id, also_completed=True)  # Train more steps
    store.claim("train", process_token())
    assert "notices" not in store.get(job.id).details and store.get(job.id).loss == 0.4


def test_a_nan_or_infinite_figure_is_kept_as_null(store):
    """A diverging run's loss (NaN) was stored as NaN, which the browser's JSON.parse refuses: every page that read
    the job failed."""
    (job,) = _add(store, 1)
    store.start(job.id, process_token())
    store.progress(job.id, {"step": 3, "loss": float("nan")})
    store.finish(job.id, "completed", result={"final_loss": float("nan"), "curve": [1.0, float("inf")], "steps": 3})
    found = store.get(job.id)
    assert found.result == {"final_loss": None, "curve": [1.0, None], "steps": 3}
    assert found.details.get("loss") is None
    json.loads(json.dumps(found.public()), parse_constant=lambda name: pytest.fail(f"{name} in the job's JSON"))
