"""Right after a pod starts the models are still downloading: a training job can be queued at once and
starts by itself when they are ready; a download that failed for good is an error before anything starts."""

from __future__ import annotations

import time

import trainer
from studio.atomic import atomic_write_json
from studio.registry import model_paths
from studio.workspace import Workspace
from tests.test_trainer_worker import TINY_CONFIG, _worker, make_export


def _downloads(settings, zimage: dict, adapter: dict) -> None:
    atomic_write_json(Workspace(settings.root).model_status_file, {
        "state": "downloading", "updated_at": time.time(), "models": [
            {"key": "zimage", "name": "Z-Image-Turbo", "percent": 0.0, **zimage},
            {"key": "adapter", "name": "zimage_turbo_training_adapter", "percent": 0.0, **adapter}]})


def test_a_job_started_while_the_model_downloads_waits_in_the_queue(settings):
    make_export(settings.root)
    _downloads(settings, {"state": "downloading", "percent": 63.0, "eta_s": 180},
               {"state": "downloading", "percent": 10.0, "eta_s": 60})
    client = trainer.create_app(settings).test_client()
    body = {"name": "early", "recipe": "zimage-turbo", "dataset": "tiny-set", "config": TINY_CONFIG}
    report = client.post("/api/jobs/validate", json=body).get_json()
    assert report["ok"]
    (warning,) = [w["message"] for w in report["warnings"] if w["field"] == "model"][:1]
    assert warning == ("The Z-Image-Turbo model is downloading, 63% (ETA 3 min): the job waits in the queue and "
                       "starts by itself when the download is done.")
    job = client.post("/api/jobs", json=body).get_json()["job"]

    worker = _worker(settings)
    assert worker.run_once() is None  # nothing claimed while the model is missing
    waiting = client.get(f"/api/jobs/{job['id']}").get_json()["job"]
    assert waiting["status"] == "queued"
    assert waiting["message"] == ("Waiting for the Z-Image-Turbo model: downloading, 63% (ETA 3 min). It starts by "
                                  "itself when the download is done.")
    listed = client.get("/api/jobs").get_json()
    assert listed["schedule"][job["id"]]["starts_in_s"] == 180  # after the download, not "now"
    assert [w["state"] for w in listed["workers"]] == ["waiting"]  # the worker chip: "worker waiting for models"

    paths = model_paths(settings)  # the download finishes
    for path in (paths.zimage_dir / "model_index.json", paths.training_adapter):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    _downloads(settings, {"state": "ready", "percent": 100.0}, {"state": "ready", "percent": 100.0})
    done = worker.run_once()
    assert done.id == job["id"] and done.status == "completed"


def test_a_download_that_failed_for_good_is_an_error_before_the_job_starts(settings):
    make_export(settings.root)
    _downloads(settings, {"state": "error", "error": "404 from the hub"}, {"state": "ready", "percent": 100.0})
    client = trainer.create_app(settings).test_client()
    body = {"name": "early", "recipe": "zimage-turbo", "dataset": "tiny-set", "config": TINY_CONFIG}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422
    assert "The Z-Image-Turbo model is not on disk (download failed: 404 from the hub)" in str(response.get_json())
