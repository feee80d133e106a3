"""Exports are versions: jobs keep their data when a name is exported again; unused versions can be
removed (with their size shown), used ones cannot; resume refuses clearly when its data is gone."""

from __future__ import annotations

import shutil

import pytest

import app as datasets_app
import trainer
from studio import exports
from studio.workspace import Workspace
from tests.test_datasets_support import image_bytes, upload, wait_job
from tests.test_trainer_worker import TINY_CONFIG


@pytest.fixture
def apps(make_settings):
    settings = make_settings(STUDIO_DEMO=1)
    return datasets_app.create_app(settings).test_client(), trainer.create_app(settings).test_client()


def _export(client, dataset_id: str, name: str = "cat") -> str:
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": name}).status_code == 202
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "completed", job
    return job["result"]["version"]


def test_reexport_never_changes_the_data_under_a_job(apps, studio_root):
    datasets, jobs = apps
    dataset_id = datasets.post("/api/datasets", json={"name": "Cat", "trigger_word": "tok"}).get_json()["id"]
    upload(datasets, dataset_id, [(f"c{i}.png", image_bytes(i)) for i in range(3)])
    first = _export(datasets, dataset_id)
    # named by its content: hashing the stored files again gives the same version (what an adopted folder gets)
    assert exports.hash_folder(exports.version_dir(Workspace(studio_root), first)) == first
    job = jobs.post("/api/jobs", json={"name": "j", "dataset": "cat", "config": TINY_CONFIG}).get_json()["job"]
    assert job["dataset_version"] == first
    upload(datasets, dataset_id, [("c9.png", image_bytes(9))])
    second = _export(datasets, dataset_id)
    assert second != first
    detail = jobs.get(f"/api/jobs/{job['id']}").get_json()["job"]
    assert detail["dataset_version"] == first  # the queued job still trains on what it was given
    from studio.jobs import JobStore
    from trainer.run_job import training_data

    stored = JobStore(studio_root / "studio.db").get(job["id"])
    assert len(list(training_data(Workspace(studio_root), stored).glob("*.png"))) == 3
    # a new job takes the current version; an explicit version may be asked for
    assert jobs.post("/api/jobs", json={"name": "k", "dataset": "cat", "config": {**TINY_CONFIG, "steps": 7}}
                     ).get_json()["job"]["dataset_version"] == second
    pinned = jobs.post("/api/jobs", json={"name": "p", "dataset": "cat", "dataset_version": first,
                                          "config": {**TINY_CONFIG, "steps": 8}})
    assert pinned.status_code == 201 and pinned.get_json()["job"]["dataset_version"] == first
    gone = jobs.post("/api/jobs", json={"name": "q", "dataset": "cat", "dataset_version": "0" * 16,
                                        "config": TINY_CONFIG})
    assert gone.status_code == 422 and "no longer on disk" in gone.get_json()["error"]


def test_versions_list_sizes_and_cleanup(apps, studio_root):
    datasets, jobs = apps
    dataset_id = datasets.post("/api/datasets", json={"name": "Cat"}).get_json()["id"]
    upload(datasets, dataset_id, [(f"c{i}.png", image_bytes(i)) for i in range(2)])
    old = _export(datasets, dataset_id)
    job = jobs.post("/api/jobs", json={"name": "j", "dataset": "cat", "config": TINY_CONFIG}).get_json()["job"]
    upload(datasets, dataset_id, [("c5.png", image_bytes(5))])
    unused_middle = _export(datasets, dataset_id)
    upload(datasets, dataset_id, [("c6.png", image_bytes(6))])
    current = _export(datasets, dataset_id)
    listing = datasets.get(f"/api/exports?dataset={dataset_id}").get_json()
    by_version = {v["version"]: v for v in listing["versions"]}
    assert set(by_version) == {old, unused_middle, current}
    assert by_version[old]["used_by"][0]["id"] == job["id"] and not by_version[old]["deletable"]
    assert by_version[current]["current"] and by_version[current]["names"] == ["cat"]
    assert by_version[unused_middle]["deletable"] and by_version[unused_middle]["images"] == 3
    # its images are hard links of the dataset's own: deleting it gives back its captions and dataset.json only
    folder = studio_root / "trainer" / "datasets" / ".versions" / unused_middle
    own = sum(path.stat().st_size for path in folder.iterdir() if path.stat().st_nlink == 1)
    assert 0 < listing["reclaimable_bytes"] == own < by_version[unused_middle]["bytes"]
    refused = datasets.delete(f"/api/exports/{old}")
    assert refused.status_code == 409 and job["id"] in refused.get_json()["error"]
    assert datasets.delete(f"/api/exports/{current}").status_code == 409
    freed = datasets.delete(f"/api/exports/{unused_middle}").get_json()
    assert freed["freed_bytes"] == own
    assert datasets.delete(f"/api/exports/{unused_middle}").status_code == 404
    assert datasets.delete("/api/exports/..%2f..").status_code in (400, 404)
    assert datasets.get("/api/exports?dataset=nope").status_code == 404


def test_resume_refuses_when_its_data_is_gone(apps, studio_root):
    datasets, jobs = apps
    dataset_id = datasets.post("/api/datasets", json={"name": "Cat"}).get_json()["id"]
    upload(datasets, dataset_id, [("c0.png", image_bytes(0))])
    version = _export(datasets, dataset_id)
    job = jobs.post("/api/jobs", json={"name": "j", "dataset": "cat", "config": TINY_CONFIG}).get_json()["job"]
    jobs.post(f"/api/jobs/{job['id']}/stop")
    shutil.rmtree(exports.version_dir(Workspace(studio_root), version))  # removed by hand
    response = jobs.post(f"/api/jobs/{job['id']}/resume")
    assert response.status_code == 409
    assert "no longer on disk" in response.get_json()["error"] and version in response.get_json()["error"]


def test_a_version_a_deleted_job_would_resume_on_is_kept_until_the_job_is_gone_for_good(apps, studio_root):
    """A stopped job deleted to Recently deleted no longer held its export version: the version could be deleted,
    and the job, restored, could not resume ("no longer on disk")."""
    datasets, jobs = apps
    dataset_id = datasets.post("/api/datasets", json={"name": "Cat"}).get_json()["id"]
    upload(datasets, dataset_id, [("c0.png", image_bytes(0))])
    old = _export(datasets, dataset_id)
    body = {"name": "stopped one", "dataset": "cat", "config": TINY_CONFIG}
    job = jobs.post("/api/jobs", json=body).get_json()["job"]
    jobs.post(f"/api/jobs/{job['id']}/stop")
    upload(datasets, dataset_id, [("c1.png", image_bytes(1))])
    _export(datasets, dataset_id)  # the name points at a newer version now
    assert jobs.delete(f"/api/jobs/{job['id']}").get_json()["deleted"] is True
    listed = {v["version"]: v for v in datasets.get(f"/api/exports?dataset={dataset_id}").get_json()["versions"]}
    assert listed[old]["used_by"] == [{"id": job["id"], "name": "stopped one", "status": "in Recently deleted"}]
    assert not listed[old]["deletable"]
    refused = datasets.delete(f"/api/exports/{old}")
    assert refused.status_code == 409 and job["id"] in refused.get_json()["error"]
    assert jobs.delete("/api/trash").status_code == 200  # emptied: nothing needs it any more
    assert datasets.delete(f"/api/exports/{old}").status_code == 200


def test_a_picture_whose_record_was_left_behind_is_hashed_again(apps, studio_root):
    """An image edit killed between writing the picture and saving its record leaves the old digest in dataset.json:
    the export named its version by that digest, so it was taken for the export of the old picture, and the training
    data came without the edit."""
    datasets, _jobs = apps
    dataset_id = datasets.post("/api/datasets", json={"name": "Cat"}).get_json()["id"]
    upload(datasets, dataset_id, [("c0.png", image_bytes(0)), ("c1.png", image_bytes(1))])
    first = _export(datasets, dataset_id)
    picture = studio_root / "datasets" / dataset_id / "c0.png"
    picture.write_bytes(image_bytes(0, size=(96, 64)))  # cropped differently; its record not saved after
    second = _export(datasets, dataset_id)
    assert second != first
    stored = exports.version_dir(Workspace(studio_root), second)
    assert exports.hash_folder(stored) == second
    assert any(path.read_bytes() == picture.read_bytes() for path in stored.iterdir())
