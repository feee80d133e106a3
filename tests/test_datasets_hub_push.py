"""Publish a dataset's export to Hugging Face: one commit with the images, their captions as .txt files and as a
metadata.jsonl, and a dataset card; private unless asked; publishing again mirrors the export; every refusal a
sentence. A local server speaking the hub's protocol stands in for the hub."""

from __future__ import annotations

import io
import json

import pytest

import app as datasets_app
from tests.test_datasets_hub_import import HF, hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_support import image_bytes, upload, wait_job
from tests.test_datasets_url_import import _dataset, _import


@pytest.fixture
def client(make_settings, hub):  # noqa: F811
    settings = make_settings(HF_ENDPOINT=hub.url, HF_TOKEN="hf_pod_token")
    return datasets_app.create_app(settings).test_client()


def _exported(client, images: dict[str, str], trigger: str = "anna") -> str:
    dataset_id = client.post("/api/datasets", json={"name": "Anna", "trigger_word": trigger}).get_json()["id"]
    files = [(name, image_bytes(index, size=(96, 96))) for index, name in enumerate(images)]
    files += [(name.rsplit(".", 1)[0] + ".txt", caption.encode()) for name, caption in images.items() if caption]
    assert upload(client, dataset_id, files)["status"] == "completed"
    _export(client, dataset_id)
    return dataset_id


def _export(client, dataset_id: str) -> None:
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "anna-v1"}).status_code == 202
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "completed", job


def _publish(client, dataset_id: str, body: dict) -> dict:
    response = client.post(f"/api/datasets/{dataset_id}/push-hub", json=body)
    assert response.status_code == 202, response.get_json()
    return wait_job(client, f"/api/datasets/{dataset_id}/push-hub", key="job")


def test_an_export_is_published_in_one_commit_and_imports_back_the_same(client, hub):  # noqa: F811
    dataset_id = _exported(client, {"a.png": "a woman in a red coat", "b.png": "anna on a bench", "c.png": ""})
    job = _publish(client, dataset_id, {"repo": "anna-photos"})
    assert job["status"] == "completed", job
    assert job["result"]["repo"] == "me/anna-photos" and job["result"]["url"] == f"{hub.url}/datasets/me/anna-photos"
    assert job["result"]["images"] == 3 and job["message"] == "Published 3 images to me/anna-photos."
    assert "datasets/me/anna-photos" in hub.private  # private unless asked
    [commit] = [c for c in hub.commits if c["repo"] == "datasets/me/anna-photos"]
    assert commit["files"] == ["README.md", "train/a.png", "train/a.txt", "train/b.png", "train/b.txt",
                               "train/c.png", "train/c.txt", "train/metadata.jsonl"]
    assert commit["summary"].startswith("anna-v1: 3 images (version ")
    files = hub.repos["datasets/me/anna-photos"]
    uploaded = sum(len(data) for name, data in files.items() if name.endswith((".png", ".txt")))
    assert job["bytes_done"] == job["bytes_total"] == uploaded  # byte progress over the images and captions
    assert files["train/a.txt"].decode().strip() == "anna, a woman in a red coat"  # the trigger word, as exported
    rows = [json.loads(line) for line in files["train/metadata.jsonl"].decode().splitlines()]
    assert rows == [{"file_name": "a.png", "text": "anna, a woman in a red coat"},
                    {"file_name": "b.png", "text": "anna on a bench"}, {"file_name": "c.png", "text": "anna"}]
    card = hub.cards[-1]  # the front matter the hub validated
    assert card["task_categories"] == ["text-to-image"] and card["size_categories"] == ["n<1K"]
    assert card["configs"][0]["data_files"][0]["split"] == "train"
    assert "train/metadata.jsonl" in card["configs"][0]["data_files"][0]["path"]
    readme = files["README.md"].decode()
    assert 'load_dataset("me/anna-photos", split="train")' in readme and "trigger word `anna`" in readme
    assert "![anna, a woman in a red coat](train/a.png)" in readme

    back = _dataset(client)  # the published dataset imports back as it was
    assert _import(client, back, f"{HF}/me/anna-photos")["status"] == "completed"
    images = client.get(f"/api/datasets/{back}/images").get_json()["images"]
    assert {i["name"]: i["caption"] for i in images} == {"a.png": "anna, a woman in a red coat",
                                                         "b.png": "anna on a bench", "c.png": "anna"}


def test_publishing_again_mirrors_the_export_and_a_public_repo_in_a_named_namespace(client, hub):  # noqa: F811
    dataset_id = _exported(client, {"a.png": "one", "b.png": "two"})
    assert _publish(client, dataset_id, {"repo": "team/set", "private": False})["status"] == "completed"
    assert "datasets/team/set" not in hub.private
    assert client.delete(f"/api/datasets/{dataset_id}/images/b.png").status_code in (200, 204)
    _export(client, dataset_id)
    job = _publish(client, dataset_id, {"repo": "team/set", "private": False})
    assert job["status"] == "completed" and job["result"]["removed"] == ["train/b.png", "train/b.txt"], job
    assert hub.commits[-1]["deleted"] == ["train/b.png", "train/b.txt"]
    assert sorted(hub.repos["datasets/team/set"]) == ["README.md", "train/a.png", "train/a.txt",
                                                      "train/metadata.jsonl"]
    state = client.get(f"/api/datasets/{dataset_id}/push-hub").get_json()
    assert state["token"] is True and state["job"]["result"]["repo"] == "team/set"


@pytest.mark.parametrize("body, status, words", [
    ({"repo": "a/b/c"}, 422, "is not a valid repo name"),
    ({"repo": "bad name"}, 422, "is not a valid repo name"),
    ({"repo": "ok", "private": "yes"}, 422, "'private' must be true or false"),
    ({"repo": "ok", "export": "someone-else"}, 404, "There is no export 'someone-else' of this dataset"),
])
def test_what_cannot_be_published_is_refused_at_once(client, hub, body, status, words):  # noqa: F811
    dataset_id = _exported(client, {"a.png": "one"})
    response = client.post(f"/api/datasets/{dataset_id}/push-hub", json=body)
    assert response.status_code == status and words in response.get_json()["error"]
    assert hub.commits == []


def test_no_token_or_no_export_is_a_409(make_settings, client, hub):  # noqa: F811
    dataset_id = _dataset(client)
    response = client.post(f"/api/datasets/{dataset_id}/push-hub", json={"repo": "x"})
    assert response.status_code == 409 and "has not been exported yet" in response.get_json()["error"]
    tokenless = datasets_app.create_app(make_settings(HF_ENDPOINT=hub.url)).test_client()
    dataset_id = _exported(tokenless, {"a.png": "one"})
    response = tokenless.post(f"/api/datasets/{dataset_id}/push-hub", json={"repo": "x"})
    assert response.status_code == 409 and "Set HF_TOKEN" in response.get_json()["error"]
    assert tokenless.get(f"/api/datasets/{dataset_id}/push-hub").get_json() == {"job": None, "token": False}


def test_a_token_without_write_access_fails_with_a_sentence(client, hub):  # noqa: F811
    dataset_id = _exported(client, {"a.png": "one"})
    hub.user = None  # the hub refuses the token
    job = _publish(client, dataset_id, {"repo": "me/set"})
    assert job["status"] == "failed" and "HF_TOKEN needs write access" in job["error"], job
    assert hub.commits == []


def test_a_phone_photo_is_published_without_its_location_and_camera(client, hub, studio_root):  # noqa: F811
    from tests.test_private_metadata import SECRETS, XMP, _check, _exif, _photo

    buffer = io.BytesIO()
    _photo().save(buffer, "JPEG", exif=_exif(), xmp=XMP)
    photo = buffer.getvalue()
    dataset_id = client.post("/api/datasets", json={"name": "Trip"}).get_json()["id"]
    files = [("IMG_0001.jpg", photo), ("IMG_0001.txt", b"a beach"), ("plain.png", image_bytes(3, size=(96, 96)))]
    assert upload(client, dataset_id, files)["status"] == "completed"
    _export(client, dataset_id)
    job = _publish(client, dataset_id, {"repo": "trip"})
    assert job["status"] == "completed" and job["result"]["cleaned"] == 1, job
    assert job["message"] == "Published 2 images to me/trip (location and camera data removed from 1 photo)."
    published = hub.repos["datasets/me/trip"]
    _check(photo, published["train/IMG_0001.jpg"], orientation=6)
    assert published["train/plain.png"] == image_bytes(3, size=(96, 96))  # nothing to remove: as it was
    kept = studio_root / "datasets" / dataset_id / "IMG_0001.jpg"
    assert kept.read_bytes() == photo and all(s in photo for s in SECRETS[:3])  # the pod keeps the photo whole
    assert (studio_root / ".uploads").is_dir() and not list((studio_root / ".uploads").glob("publish-*"))


def test_an_expired_token_is_said_to_be_one_when_pushing_a_dataset(client, hub):  # noqa: F811
    dataset_id = _exported(client, {"a.png": "one"})
    hub.refused_tokens.add("hf_pod_token")  # the hub no longer knows it: expired or revoked
    job = _publish(client, dataset_id, {"repo": "me/set"})
    assert job["status"] == "failed" and "did not accept HF_TOKEN" in job["error"], job
    assert "expired or been revoked" in job["error"] and hub.commits == []
