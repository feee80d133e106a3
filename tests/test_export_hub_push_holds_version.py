"""A version being published to Hugging Face stays until the publish ends: exported again meanwhile, the old version
is not deletable (one sentence says why), the publish commits it whole, and then it can go. The local stand-in hub
speaks the hub's protocol."""

from __future__ import annotations

import threading

import pytest

import app as datasets_app
from app import hub_push
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_support import image_bytes, upload, wait_job


@pytest.fixture
def client(make_settings, hub):  # noqa: F811
    settings = make_settings(HF_ENDPOINT=hub.url, HF_TOKEN="hf_pod_token")
    return datasets_app.create_app(settings).test_client()


def _export(client, dataset_id: str) -> str:
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "anna-v1"}).status_code == 202
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "completed", job
    return job["result"]["version"]


def test_the_version_being_published_cannot_be_deleted_until_the_publish_ends(client, hub, monkeypatch):  # noqa: F811
    dataset_id = client.post("/api/datasets", json={"name": "Anna", "trigger_word": "anna"}).get_json()["id"]
    upload(client, dataset_id, [("a.png", image_bytes(1, size=(96, 96))), ("a.txt", b"a woman"),
                                ("b.png", image_bytes(2, size=(96, 96)))])
    published = _export(client, dataset_id)
    removed, go_on = hub_push.private_metadata.removed, threading.Event()

    def held(job, files, work):  # the publish waits here, its files listed, until the test lets it go on
        go_on.wait(20)
        return removed(job, files, work)

    monkeypatch.setattr(hub_push.private_metadata, "removed", held)
    started = client.post(f"/api/datasets/{dataset_id}/push-hub", json={"repo": "anna-photos"})
    assert started.status_code == 202
    client.put(f"/api/datasets/{dataset_id}/captions/a.png", json={"caption": "a woman in red"})
    assert _export(client, dataset_id) != published  # the name points at a newer version now
    listed = {v["version"]: v for v in client.get(f"/api/exports?dataset={dataset_id}").get_json()["versions"]}
    assert listed[published]["used_by"][0]["name"] == "publishing anna-v1 to Hugging Face"
    assert not listed[published]["deletable"]
    refused = client.delete(f"/api/exports/{published}")
    assert refused.status_code == 409
    assert refused.get_json()["error"] == (f"Version {published} is being published to Hugging Face "
                                           f"({started.get_json()['id']}): delete it when that has finished.")
    go_on.set()
    job = wait_job(client, f"/api/datasets/{dataset_id}/push-hub", key="job")
    assert job["status"] == "completed", job
    assert job["result"]["version"] == published and job["result"]["images"] == 2
    assert hub.repos["datasets/me/anna-photos"]["train/a.txt"].decode().strip() == "anna, a woman"  # what it showed
    assert client.delete(f"/api/exports/{published}").status_code == 200
