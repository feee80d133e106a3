"""The queue's ETAs (trainer.schedule) with a job that cannot train, and a running job asked to stop."""

from __future__ import annotations

import os
import shutil

from studio import exports
from studio.processes import process_token
from studio.workspace import Workspace
from tests.test_trainer_worker import TINY_CONFIG, make_export


def _queue(client, dataset, name):
    body = {"name": name, "recipe": "zimage-turbo", "dataset": dataset, "config": TINY_CONFIG}
    return client.post("/api/jobs", json=body).get_json()["job"]["id"]


def test_a_job_whose_data_was_deleted_while_it_waited_holds_no_time_and_says_so(trainer_app, trainer_client):
    root = trainer_app.config["STUDIO_SETTINGS"].root
    store = trainer_app.extensions["job_store"]
    make_export(root, "cats")
    make_export(root, "dogs", count=3)
    gone, behind = _queue(trainer_client, "dogs", "dogs job"), _queue(trainer_client, "cats", "cats job")
    store.worker_beat(os.getpid(), "idle")
    before = trainer_client.get("/api/jobs").get_json()["schedule"]
    # the dogs version is removed by hand while the job waits (the worker fails such a job the moment it takes it)
    shutil.rmtree(exports.version_dir(Workspace(root), store.get(gone).dataset_version))

    schedule = trainer_client.get("/api/jobs").get_json()["schedule"]
    assert schedule[gone]["starts_in_s"] == schedule[gone]["done_in_s"] == 0
    assert "is no longer on disk" in schedule[gone]["data_missing"]
    # the job behind it still has its time, and starts at once
    assert schedule[behind]["starts_in_s"] == 0
    assert abs(schedule[behind]["done_in_s"] - (before[behind]["done_in_s"] - before[gone]["done_in_s"])) <= 1
    assert "data_missing" not in schedule[behind]


def test_a_running_job_asked_to_stop_no_longer_holds_up_the_queue(trainer_app, trainer_client):
    root = trainer_app.config["STUDIO_SETTINGS"].root
    store = trainer_app.extensions["job_store"]
    make_export(root, "cats")
    first, waiting = _queue(trainer_client, "cats", "first"), _queue(trainer_client, "cats", "second")
    store.worker_beat(os.getpid(), "busy", first)
    assert store.claim("train", process_token()).id == first
    store.progress(first, {"step": 2, "eta_s": 900.0})
    assert trainer_client.get("/api/jobs").get_json()["schedule"][waiting]["starts_in_s"] == 900

    store.request_stop(first, reason="Stopping: saving a checkpoint.")
    assert trainer_client.get("/api/jobs").get_json()["schedule"][waiting]["starts_in_s"] == 0


def test_the_job_list_holds_every_waiting_job_and_a_delete_is_not_taken_back_by_a_stop(make_settings):
    """`GET /api/jobs?limit=50` left out the oldest waiting jobs (the next to run) once 50 newer ones existed; and
    Stop from a second tab on a job another tab had deleted turned the delete into a stop."""
    import trainer
    from studio.processes import process_token

    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    store = app.extensions["job_store"]
    oldest, _ = store.create("train", name="oldest", config={"name": "oldest"})
    for index in range(5):
        store.create("train", name=f"newer {index}", config={"name": f"newer-{index}"})
    listed = app.test_client().get("/api/jobs?limit=3").get_json()
    assert oldest.id in [job["id"] for job in listed["jobs"]] and listed["queue"][0] == oldest.id
    store.start(oldest.id, process_token())
    store.request_stop(oldest.id, delete=True)
    store.request_stop(oldest.id)  # the other tab's Stop
    assert store.get(oldest.id).control == "delete"


def test_the_dashboards_stream_follows_the_workers_too(make_settings):
    """A worker that died (or began to wait for models) changed no job, so the live dashboard kept its "worker"
    box and the queue's times as they were until some job changed."""
    import os

    import trainer
    from trainer import events

    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    store = app.extensions["job_store"]
    with app.app_context():
        before = events.dashboard_version()
        store.worker_beat(os.getpid(), "waiting for models")
        waiting = events.dashboard_version()
        store.worker_gone(os.getpid())
        assert before != waiting and events.dashboard_version() != waiting
