"""A running import can be stopped: a link's slow download ends "stopped" within a moment and leaves no partial
file; an import stopped while it places images keeps those it placed (recorded), and "Import the rest" brings
the others. A real HTTP server on this machine stands in for the web, one that sends a big file slowly."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest

import app as datasets_app
from app import importer, link_fetch
from studio.workspace import Workspace
from tests.helpers import serving
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes

BIG = 200 * 2**20  # what the slow link says it sends
PIECE = 64 * 1024
COUNT = 12
SET_ZIP = zip_bytes([(f"set/p{i:02d}.png", image_bytes(i, size=(80, 80))) for i in range(COUNT)])


class SlowWeb(BaseHTTPRequestHandler):
    """/slow.zip: a 200 MB ZIP at about 2 MB/s (it would take minutes); /set.zip: a ZIP of 12 images at once;
    /stall.zip: its first bytes, then silence."""

    def do_GET(self):  # noqa: N802 - the standard library's name
        if self.path == "/set.zip":
            self._head(len(SET_ZIP))
            self.wfile.write(SET_ZIP)
            return
        if self.path == "/stall.zip":  # a start, then nothing: the link has gone quiet
            self._head(BIG)
            self.wfile.write(b"PK\x03\x04" + b"\0" * PIECE)
            self.wfile.flush()
            self.connection.settimeout(120)
            try:
                self.connection.recv(1)  # returns when the studio hangs up
            except OSError:
                pass
            return
        self._head(BIG)
        sent = 0
        try:
            self.wfile.write(b"PK\x03\x04")
            while sent < BIG:
                self.wfile.write(b"\0" * PIECE)
                self.wfile.flush()
                sent += PIECE
                time.sleep(0.03)
        except (BrokenPipeError, ConnectionResetError):
            return  # the studio hung up: the stop worked

    def _head(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, *args):
        return None


@pytest.fixture(scope="module")
def slow_web():
    with serving(SlowWeb) as url:
        yield url


@pytest.fixture
def studio(make_settings):
    return datasets_app.create_app(make_settings(ALLOW_PRIVATE_URLS="1", MAX_UPLOAD_MB="300")).test_client()


def _dataset(client) -> str:
    return client.post("/api/datasets", json={"name": "Linked"}).get_json()["id"]


def _start(client, dataset_id: str, url: str) -> str:
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def _names(client, dataset_id: str) -> list[str]:
    return [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]


def test_a_slow_link_download_stops_at_once_and_leaves_nothing(studio, slow_web, make_settings):
    dataset_id = _dataset(studio)
    job_id = _start(studio, dataset_id, f"{slow_web}/slow.zip")
    url = f"/api/datasets/{dataset_id}/imports/{job_id}"
    wait_job(studio, url, until=lambda j: (j.get("bytes_done") or 0) >= 2**20)  # well into the download
    asked = time.monotonic()
    response = studio.post(f"{url}/stop")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["stopping"] is True
    job = wait_job(studio, url, timeout=15)
    took = time.monotonic() - asked
    assert job["status"] == "stopped" and job["resumable"], job
    assert took < 5, f"the stop took {took:.1f} s"
    assert 0 < job["bytes_done"] < BIG and job["bytes_total"] == BIG
    assert job.get("imported", 0) == 0  # what the page says: "Stopped: 0 images imported before the stop"
    # nothing half-written: no image, no partial download left in the uploads folder
    assert _names(studio, dataset_id) == []
    uploads = Workspace(make_settings().root).uploads
    assert not uploads.exists() or list(uploads.iterdir()) == []
    dataset_dir = Workspace(make_settings().root).datasets / dataset_id
    assert sorted(p.name for p in dataset_dir.iterdir() if not p.name.startswith(".")) == ["dataset.json"]
    # it has ended: a second stop says so
    again = studio.post(f"{url}/stop")
    assert again.status_code == 409 and "nothing to stop" in again.get_json()["error"]


def test_a_link_gone_quiet_stops_without_waiting_for_its_read_timeout(studio, slow_web, monkeypatch):
    monkeypatch.setattr(link_fetch, "READ_TIMEOUT_S", 600)  # a quiet link is given up only after ten minutes
    dataset_id = _dataset(studio)
    job_id = _start(studio, dataset_id, f"{slow_web}/stall.zip")
    url = f"/api/datasets/{dataset_id}/imports/{job_id}"
    wait_job(studio, url, until=lambda j: (j.get("bytes_done") or 0) > 0)
    assert studio.post(f"{url}/stop").status_code == 202
    job = wait_job(studio, url, timeout=30)  # the stop cuts the connection rather than waiting on it
    assert job["status"] == "stopped" and job["resumable"], job
    assert _names(studio, dataset_id) == []


def test_an_import_stopped_while_it_places_images_keeps_them_and_imports_the_rest_later(studio, slow_web,
                                                                                          monkeypatch):
    real_check = importer._check

    def slow_check(candidate, max_pixels):
        time.sleep(0.4)
        return real_check(candidate, max_pixels)

    monkeypatch.setattr(importer, "_check", slow_check)
    dataset_id = _dataset(studio)
    job_id = _start(studio, dataset_id, f"{slow_web}/set.zip")
    url = f"/api/datasets/{dataset_id}/imports/{job_id}"
    wait_job(studio, url, until=lambda j: (j.get("imported") or 0) >= 2)
    assert studio.post(f"{url}/stop").status_code == 202
    job = wait_job(studio, url, timeout=15)
    assert job["status"] == "stopped", job
    kept = _names(studio, dataset_id)
    assert 2 <= job["imported"] == len(kept) < COUNT  # every image placed before the stop is recorded and shown
    monkeypatch.setattr(importer, "_check", real_check)
    again = studio.post(f"{url}/resume")
    assert again.status_code == 202, again.get_json()
    rest = wait_job(studio, f"/api/datasets/{dataset_id}/imports/{again.get_json()['id']}")
    assert rest["status"] == "completed", rest
    assert _names(studio, dataset_id) == [f"p{i:02d}.png" for i in range(COUNT)]  # none lost, none doubled


def test_only_a_running_import_of_this_dataset_can_be_stopped(studio, slow_web):
    dataset_id, other = _dataset(studio), _dataset(studio)
    job_id = _start(studio, dataset_id, f"{slow_web}/set.zip")
    url = f"/api/datasets/{dataset_id}/imports/{job_id}"
    assert studio.post(f"/api/datasets/{other}/imports/{job_id}/stop").status_code == 404
    assert wait_job(studio, url)["status"] == "completed"
    finished = studio.post(f"{url}/stop")
    assert finished.status_code == 409
    assert finished.get_json()["error"] == "This import is completed: there is nothing to stop."
    assert studio.post(f"/api/datasets/{dataset_id}/imports/import-nope/stop").status_code == 404
