"""Shared builders for the dataset manager tests: images, hostile ZIPs, the app and job polling."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

import app as datasets_app


def image_bytes(seed: int = 0, size=(64, 48), fmt: str = "PNG", exif_orientation: int | None = None) -> bytes:
    """A small image with its own pattern (so perceptual hashes differ between seeds)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buffer, fmt, exif=exif)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def zip_bytes(entries: list[tuple], compression=zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name, data) or (ZipInfo, data)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def wait_job(client, url: str, timeout: float = 30.0, key: str | None = None, until=None) -> dict:
    """Poll until the job has ended (or `until(job)` holds); returns the job."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(url).get_json()
        job = body.get(key) if key else body
        if job and (until(job) if until else job["status"] not in {"queued", "running"}):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job at {url} still {job and job['status']}")
        time.sleep(0.05)


def upload(client, dataset_id: str, files: list[tuple[str, bytes]]) -> dict:
    """Multipart upload, then wait for the import job; returns the finished job."""
    data = {"files": [(io.BytesIO(content), name) for name, content in files]}
    response = client.post(f"/api/datasets/{dataset_id}/upload?wait=20", data=data,
                           content_type="multipart/form-data")
    assert response.status_code in (200, 202), response.get_json()
    job = response.get_json()
    if job["status"] in {"queued", "running"}:
        job = wait_job(client, f"/api/datasets/{dataset_id}/imports/{job['id']}")
    return job


@pytest.fixture
def ds_app(make_settings):
    return datasets_app.create_app(make_settings())


@pytest.fixture
def client(ds_app):
    return ds_app.test_client()


@pytest.fixture
def dataset_id(client) -> str:
    response = client.post("/api/datasets", json={"name": "Test Set", "trigger_word": "tok"})
    assert response.status_code == 201
    return response.get_json()["id"]
