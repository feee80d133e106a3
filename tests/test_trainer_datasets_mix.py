"""A training job on several datasets, each with its repeats: the request's checks, the versions the job
pins (and keeps from deletion), copies, the queue's estimate, and a real run through the worker."""

from __future__ import annotations

import json
import shutil

import pytest

import trainer
from studio import exports
from studio.settings import load_settings
from studio.workspace import Workspace
from tests.test_trainer_worker import TINY_CONFIG, make_export
from trainer import schedule
from trainer.worker import Worker


@pytest.fixture
def app(trainer_app):
    make_export(trainer_app.config["STUDIO_SETTINGS"].root, "close-ups", count=2)
    make_export(trainer_app.config["STUDIO_SETTINGS"].root, "full-body", count=4)
    return trainer_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def root(app):
    return app.config["STUDIO_SETTINGS"].root


def _body(datasets, **config):
    return {"name": "mix", "datasets": datasets, "config": {**TINY_CONFIG, **config}}


MIX = [{"name": "close-ups", "repeats": 3}, {"name": "full-body"}]


def _errors(client, body) -> dict:
    response = client.post("/api/jobs/validate", json=body)
    assert response.status_code == 422, response.get_json()
    return {e["field"]: e["message"] for e in response.get_json()["errors"]}


def test_a_mix_is_checked_as_a_whole_and_dataset_by_dataset(client, root):
    report = client.post("/api/jobs/validate", json=_body(MIX)).get_json()
    assert report["ok"], report["errors"]
    assert report["images"] == 6 and report["estimated_duration_s"] > 0
    assert report["datasets"] == [{"name": "close-ups", "images": 2, "repeats": 3},
                                  {"name": "full-body", "images": 4, "repeats": 1}]
    assert not any("Only" in w["message"] for w in report["warnings"])  # 6 images together, not 2 and 4

    (root / "trainer" / "datasets" / "full-body" / "img1.txt").unlink()
    report = client.post("/api/jobs/validate", json=_body(MIX)).get_json()
    assert any(w["message"].startswith("full-body: 1 image has no caption") for w in report["warnings"])

    missing = _errors(client, _body([*MIX, {"name": "nope"}]))
    assert missing["dataset"].startswith("nope: There is no exported dataset named 'nope'")


@pytest.mark.parametrize("datasets, message", [
    ([], "at least one"),
    ("close-ups", "at least one"),
    ([{"name": f"set{i}"} for i in range(9)], "at most 8 datasets"),
    ([{"name": "close-ups", "repeats": 0}], "repeats must be a whole number from 1 to 100"),
    ([{"name": "close-ups", "repeats": 101}], "from 1 to 100"),
    ([{"name": "close-ups", "repeats": "2"}], "from 1 to 100"),
    ([{"name": "close-ups", "repeats": True}], "from 1 to 100"),
    ([{"name": "close-ups"}, {"name": "close-ups", "repeats": 2}], "named twice: give it more repeats"),
    ([{"name": "close-ups", "weight": 2}], "must be an object with a name"),
    ([{"repeats": 2}], "must be an object with a name"),
    (["close-ups"], "must be an object with a name"),
])
def test_a_malformed_list_of_datasets_says_what_is_wrong(client, root, datasets, message):
    assert message in _errors(client, _body(datasets))["datasets"]


def test_dataset_and_datasets_together_are_refused(client, root):
    body = {**_body(MIX), "dataset": "close-ups"}
    assert "not in both" in _errors(client, body)["datasets"]
    assert client.post("/api/jobs", json=body).status_code == 422


def test_a_job_pins_every_version_and_keeps_them_from_deletion(client, app, root):
    store = app.extensions["job_store"]
    workspace = Workspace(root)
    created = client.post("/api/jobs", json=_body(MIX))
    assert created.status_code == 201, created.get_json()
    job = store.get(created.get_json()["job"]["id"])
    versions = [exports.resolve(workspace, name) for name in ("close-ups", "full-body")]
    assert all(versions)  # the hand-made folders became versions
    assert job.datasets == [{"name": "close-ups", "version": versions[0], "repeats": 3},
                            {"name": "full-body", "version": versions[1], "repeats": 1}]
    assert (job.dataset, job.dataset_version) == ("close-ups", versions[0])
    assert set(store.versions_in_use()) == set(versions)

    # exporting full-body again leaves the job's data as it was
    make_export(root, "full-body-new", count=1)
    new = exports.adopt_folder(workspace, "full-body-new")
    exports.point(workspace, "full-body", new)
    from trainer.run_job import training_data

    data = training_data(workspace, job)
    assert data == [(exports.version_dir(workspace, versions[0]), 3), (exports.version_dir(workspace, versions[1]), 1)]
    with pytest.raises(exports.ExportInUse):
        exports.delete_version(workspace, versions[1], [j.id for j in store.versions_in_use()[versions[1]]])

    # the job page says what it trains on
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "<strong>close-ups</strong> ×3" in page and f"({versions[1][:8]})" in page
    assert page.count('the trigger word of this dataset\'s images">tok</code>') == 2  # each dataset's word

    # the queue can say how long it takes
    assert schedule.job_seconds(app.config["STUDIO_SETTINGS"], job) > 0

    # a version gone from disk: resuming says which
    client.post(f"/api/jobs/{job.id}/stop")
    shutil.rmtree(exports.version_dir(workspace, versions[1]))
    response = client.post(f"/api/jobs/{job.id}/resume")
    assert response.status_code == 409 and f"{versions[1]} of 'full-body'" in response.get_json()["error"]


def test_a_copy_trains_on_the_same_mix_unless_told_otherwise(client, root):
    source = client.post("/api/jobs", json=_body(MIX)).get_json()["job"]
    copy = client.post(f"/api/jobs/{source['id']}/clone", json={}).get_json()["job"]
    assert [(d["name"], d["repeats"]) for d in copy["datasets"]] == [("close-ups", 3), ("full-body", 1)]
    single = client.post(f"/api/jobs/{source['id']}/clone", json={"dataset": "full-body"}).get_json()["job"]
    assert single["datasets"] == [] and single["dataset"] == "full-body"
    other = client.post(f"/api/jobs/{source['id']}/clone",
                        json={"datasets": [{"name": "full-body", "repeats": 2}]}).get_json()["job"]
    assert [(d["name"], d["repeats"]) for d in other["datasets"]] == [("full-body", 2)]


@pytest.mark.slow
def test_the_worker_trains_one_lora_on_two_datasets(demo_root):
    settings = load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"})
    make_export(demo_root, "close-ups", count=2)
    make_export(demo_root, "full-body", count=3)
    app = trainer.create_app(settings)
    response = app.test_client().post("/api/jobs", json=_body(MIX, steps=4, sample_every=0, save_every=4))
    assert response.status_code == 201, response.get_json()
    job_id = response.get_json()["job"]["id"]
    done = Worker(settings, poll_s=0.1).run_once()
    assert done.id == job_id and done.status == "completed", done.error
    log = (Workspace(demo_root).jobs / job_id / "log.txt").read_text()
    assert "With repeats, an epoch trains on 9 image(s): close-ups x3, full-body x1." in log
    assert "Dataset: 5 image(s)" in log


def test_the_job_page_says_which_trigger_word_each_dataset_trains_with(trainer_client, studio_root):
    from studio.workspace import Workspace
    from trainer.pages import _trigger_words

    workspace = Workspace(studio_root)
    for name, trigger in (("annas", "annax"), ("bobs", "bobx"), ("plain", "")):
        folder = workspace.export_dir(name)
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text(json.dumps({"name": name, "trigger_word": trigger}))

    class Job:
        sources = [{"name": "annas", "repeats": 2}, {"name": "bobs", "repeats": 1}, {"name": "plain", "repeats": 1},
                   {"name": "../gone", "repeats": 1}]
        config = {"trigger_word": "annax"}

    with trainer_client.application.app_context():
        assert _trigger_words(Job) == ["annax", "bobx", "annax", "annax"]
        Job.sources = Job.sources[:1]
        assert _trigger_words(Job) == []  # one dataset: the job's word, shown elsewhere
