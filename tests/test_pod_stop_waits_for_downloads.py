"""The pod is never stopped under a download: a LoRA or a dataset's ZIP on its way to the user's computer holds the
idle stop (and the Stop button, and the countdown) until it ends, and the minute's grace counts from its end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import app as datasets_app
import trainer
from studio import downloads
from studio.workspace import Workspace
from tests.test_datasets_support import image_bytes, upload
from tests.test_trainer_worker import _job, _worker, receiver  # noqa: F401 - a fixture
from trainer import podstop


def _on_runpod(make_settings, runpod):
    return make_settings(STOP_POD_WHEN_IDLE=1, RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key",
                         RUNPOD_API_URL=runpod.url + "/v1")


def _markers(settings) -> list[dict]:
    folder = downloads.folder(Workspace(settings.root).state)
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _later(settings, worker, seconds: float) -> None:
    """`seconds` pass: for the worker's clock, and for the downloads that ended."""
    worker._idle_since -= seconds
    for path in downloads.folder(Workspace(settings.root).state).glob("*.json"):
        info = json.loads(path.read_text())
        if "ended_at" in info:
            path.write_text(json.dumps({**info, "ended_at": info["ended_at"] - seconds}))


def _trained(make_settings, receiver):  # noqa: F811
    runpod = receiver()
    settings = _on_runpod(make_settings, runpod)
    worker = _worker(settings, pod_stop_grace_s=60)
    _job(worker.store, steps=2)
    job = worker.run_once()
    assert job.status == "completed"
    lora = Path(job.lora_path).relative_to(Workspace(settings.root).jobs / job.id).as_posix()
    return runpod, settings, worker, f"/api/jobs/{job.id}/files/{lora}"


def test_a_lora_being_downloaded_holds_the_stop_and_its_end_starts_the_minute(make_settings, receiver):  # noqa: F811
    runpod, settings, worker, url = _trained(make_settings, receiver)
    client = trainer.create_app(settings).test_client()
    response = client.get(url, buffered=False)  # the browser is still receiving it
    assert response.status_code == 200
    [marker] = _markers(settings)
    assert marker["name"].endswith(".safetensors") and "ended_at" not in marker
    assert podstop.stops_in(settings) is None  # no countdown under a download
    state = client.get("/api/pod").get_json()
    assert state["can_stop"] is False and "is still being downloaded: let it finish first" in state["why_not"]
    assert client.post("/api/pod/stop").status_code == 409
    worker._idle_since = time.monotonic() - 120  # the training ended two minutes ago
    worker._maybe_stop_pod()
    assert runpod.requests == []  # it used to stop the pod here, cutting the download
    response.close()  # the download ends
    assert "ended_at" in _markers(settings)[0]
    worker._maybe_stop_pod()
    assert runpod.requests == []  # the minute counts from the download's end
    assert 50 < podstop.stops_in(settings) <= 60
    _later(settings, worker, 61)
    worker._maybe_stop_pod()
    (call,) = runpod.wait(1)
    assert call["path"] == "/v1/pods/pod123/stop"


def test_a_download_that_ended_between_two_looks_still_gets_its_minute(make_settings, receiver):  # noqa: F811
    runpod, settings, worker, url = _trained(make_settings, receiver)
    client = trainer.create_app(settings).test_client()
    assert client.get(url).status_code == 200  # quick: sent whole before the worker looked
    folder = downloads.folder(Workspace(settings.root).state)
    [path] = folder.glob("*.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), "ended_at": time.time() - 10}))
    worker._idle_since = time.monotonic() - 120
    worker._maybe_stop_pod()
    assert runpod.requests == []  # ended 10 s ago
    _later(settings, worker, 51)
    worker._maybe_stop_pod()
    assert len(runpod.wait(1)) == 1


def test_a_killed_process_pictures_and_head_requests_hold_nothing(make_settings, receiver, studio_root):  # noqa: F811
    runpod, settings, worker, url = _trained(make_settings, receiver)
    state = Workspace(settings.root).state
    folder = downloads.folder(state)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1-dead.json").write_text(json.dumps({"token": "999999999:1", "name": "gone.zip",
                                                    "started_at": time.time()}))
    (folder / "2-old.json").write_text(json.dumps({"token": "1:1", "name": "old.zip", "started_at": time.time(),
                                                   "ended_at": time.time() - downloads.KEEP_S - 1}))
    assert downloads.under_way(state) == ([], None)
    assert not list(folder.glob("*.json"))  # both swept
    client = trainer.create_app(settings).test_client()
    assert client.head(url).status_code == 200
    assert client.get("/api/pod").status_code == 200
    assert _markers(settings) == []


def test_a_dataset_zip_being_downloaded_is_named_in_the_stop_button_answer(make_settings, receiver):  # noqa: F811
    runpod = receiver()
    settings = _on_runpod(make_settings, runpod)
    datasets = datasets_app.create_app(settings).test_client()
    dataset_id = datasets.post("/api/datasets", json={"name": "Cats"}).get_json()["id"]
    upload(datasets, dataset_id, [("a.png", image_bytes(1)), ("b.png", image_bytes(2))])
    thumb = datasets.get(f"/api/datasets/{dataset_id}/images/a.png")
    assert thumb.status_code == 200 and _markers(settings) == []  # a picture shown in a page is no download
    response = datasets.get(f"/api/datasets/{dataset_id}/download", buffered=False)
    assert response.status_code == 200
    assert podstop.download_under_way(settings) == "Cats.zip is still being downloaded: let it finish first."
    assert b"".join(response.response)[:2] == b"PK"
    response.close()
    assert podstop.download_under_way(settings) is None
