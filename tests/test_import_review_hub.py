"""Importing a Hugging Face dataset over a network that keeps breaking: a file continues where its connection broke
off (small files too), progress counts what arrived, and a stop ends a download in flight."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import app as datasets_app
from app import hub_import
from tests.fake_hub import FakeHub
from tests.test_datasets_support import image_bytes, wait_job
from tests.test_datasets_url_import import _dataset

HF = "https://huggingface.co/datasets"


def noise_png(seed: int, side: int = 900) -> bytes:
    """A PNG of noise: megabytes that do not compress."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


BIG = noise_png(1)  # about 2.4 MB: under huggingface-hub's 10 MB read, over the 1 MB the hub below sends per answer


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as server:
        server.add("datasets/me/flaky", {"big.png": BIG, "small.png": image_bytes(3, size=(96, 96))},
                   lfs=("big.png",))
        yield server


@pytest.fixture
def client(make_settings, hub):
    settings = make_settings(HF_ENDPOINT=hub.url, HF_TOKEN="hf_pod_token", MAX_UPLOAD_MB="50")
    return datasets_app.create_app(settings).test_client()


def _start(client, dataset_id: str, url: str) -> str:
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url})
    assert response.status_code == 202, response.get_json()
    return f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}"


def test_a_file_whose_connection_keeps_breaking_continues_where_it_stopped(client, hub):
    hub.cut_every[("datasets/me/flaky", "big.png")] = 10 * 65536  # every answer breaks off after 640 KB
    dataset_id = _dataset(client)
    job = wait_job(client, _start(client, dataset_id, f"{HF}/me/flaky"), timeout=60)
    assert job["status"] == "completed", job
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert sorted(image["name"] for image in images) == ["big.png", "small.png"]
    assert job["bytes_done"] == job["bytes_total"] == len(BIG) + len(hub.repos["datasets/me/flaky"]["small.png"])
    gets = [r for r in hub.file_requests() if r["path"].endswith("big.png")]
    assert len(gets) == -(-len(BIG) // (10 * 65536)), gets  # each answer went on from where the last broke off
    assert all(r["range"] for r in gets[1:]), gets


def test_a_file_that_never_arrives_whole_fails_with_a_sentence(client, hub, monkeypatch):
    monkeypatch.setattr(hub_import, "RETRY_PAUSE_S", 0.01)
    hub.corrupt.add(("datasets/me/flaky", "big.png"))  # its bytes never match the listed hash
    dataset_id = _dataset(client)
    job = wait_job(client, _start(client, dataset_id, f"{HF}/me/flaky"), timeout=60)
    assert job["status"] == "failed", job
    assert "me/flaky/big.png failed 5 times in a row" in job["error"] and "hash" in job["error"], job["error"]
    gets = [r for r in hub.file_requests() if r["path"].endswith("big.png")]
    assert len(gets) == hub_import.TRIES_WITHOUT_BYTES, gets
    assert client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"] == []  # no broken image placed
