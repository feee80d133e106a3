"""Bulk auto-caption against a local stand-in that speaks the caption service's HTTP contract."""

from __future__ import annotations

import base64
import io
import threading
import time

import pytest
from flask import Flask, jsonify, request
from PIL import Image
from werkzeug.serving import make_server

import app as datasets_app
from app.autocaption import combine
from tests.helpers import free_port
from tests.test_datasets_support import image_bytes, upload, wait_job


class StandIn:
    """Captions '<width>px image'; behaviour per image width: fail, block until released, or slow."""

    def __init__(self):
        self.status = "ready"
        self.busy_answers = 0  # answer 503 this many times first
        self.fail_widths: set[int] = set()
        self.block_width: int | None = None
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.delay = 0.0
        self.seen_auth: list[str | None] = []
        self.requests: list[dict] = []
        flask_app = Flask("stand-in")

        @flask_app.get("/health")
        def health():
            return jsonify({"status": self.status, "reason": None, "model": "tiny", "mmproj": "tiny",
                            "device": "cpu", "load_seconds": 0.1, "queue": 0})

        @flask_app.post("/caption")
        def caption():
            self.seen_auth.append(request.headers.get("Authorization"))
            body = request.get_json()
            self.requests.append({k: v for k, v in body.items() if k != "image"})
            if self.busy_answers > 0:
                self.busy_answers -= 1
                return jsonify({"error": "loading"}), 503, {"Retry-After": "1"}
            width = Image.open(io.BytesIO(base64.b64decode(body["image"]))).width
            if width in self.fail_widths:
                return jsonify({"error": "bad image"}), 422
            if width == self.block_width:
                self.blocked.set()
                self.release.wait(10)
            time.sleep(self.delay)
            return jsonify({"caption": f"{width}px {body['style']} image", "seconds": 0.01, "tokens": 4})

        self.server = make_server("127.0.0.1", free_port(), flask_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()  # refuse new connections, as a stopped service does


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.close()


def _setup(make_settings, url: str, widths=(60, 61, 62, 63), **env):
    app = datasets_app.create_app(make_settings(CAPTION_URL=url, **env))
    client = app.test_client()
    if "STUDIO_PASSWORD" in env:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {env['STUDIO_PASSWORD']}"
    did = client.post("/api/datasets", json={"name": "cap"}).get_json()["id"]
    files = [(f"w{w}.png", image_bytes(w, size=(w, 40))) for w in widths]
    upload(client, did, files)
    return client, did


def _captions(client, did) -> dict:
    images = client.get(f"/api/datasets/{did}/images").get_json()["images"]
    return {i["name"]: i["caption"] for i in images}


def test_service_status_ready_loading_and_down(make_settings, stand_in):
    client, _ = _setup(make_settings, stand_in.url, widths=(60,))
    status = client.get("/api/caption-service").get_json()
    assert status["reachable"] and status["status"] == "ready"
    stand_in.status = "loading"
    assert client.get("/api/caption-service").get_json()["status"] == "loading"
    down = datasets_app.create_app(make_settings(CAPTION_URL=f"http://127.0.0.1:{free_port()}")).test_client()
    body = down.get("/api/caption-service").get_json()
    assert body["reachable"] is False and body["status"] == "down" and "not answering" in body["reason"]


def test_captions_uncaptioned_reports_failures_and_sends_the_password(make_settings, stand_in):
    stand_in.fail_widths = {62}
    client, did = _setup(make_settings, stand_in.url, STUDIO_PASSWORD="pw")
    client.put(f"/api/datasets/{did}/captions/w60.png", json={"caption": "mine"})
    started = client.post(f"/api/datasets/{did}/caption", json={"mode": "skip", "style": "short"})
    assert started.status_code == 202
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed" and job["total"] == 3 and job["done"] == 3
    assert job["errors"] == [{"item": "w62.png", "message": "caption service answered 422: bad image"}]
    assert "Captioned 2 of 3" in job["message"] and "1 failed" in job["message"]
    assert _captions(client, did) == {"w60.png": "mine", "w61.png": "61px short image", "w62.png": "",
                                      "w63.png": "63px short image"}
    assert set(stand_in.seen_auth) == {"Bearer pw"}
    # no max_tokens: the service's own for the style (64 for a short caption, not 300)
    assert stand_in.requests[0]["style"] == "short" and "max_tokens" not in stand_in.requests[0]
    # the run is one bulk change: undo restores the captions it replaced
    assert client.post(f"/api/datasets/{did}/captions/undo").get_json()["op"] == "auto-caption"
    assert _captions(client, did)["w61.png"] == ""


def test_append_mode_and_waiting_for_a_loading_service(make_settings, stand_in):
    stand_in.busy_answers = 2
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61))
    client.put(f"/api/datasets/{did}/captions/w60.png", json={"caption": "mine"})
    client.post(f"/api/datasets/{did}/caption", json={"mode": "append", "style": "tags"})
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job", timeout=30)
    assert job["status"] == "completed" and job["errors"] == []
    assert _captions(client, did) == {"w60.png": "mine, 60px tags image", "w61.png": "61px tags image"}
    assert job["config"]["chosen"] is False  # the whole dataset: a page may offer to caption its rest
    client.post(f"/api/datasets/{did}/caption", json={"mode": "append", "style": "tags", "names": ["w61.png"]})
    assert wait_job(client, f"/api/datasets/{did}/caption", key="job", timeout=30)["config"]["chosen"] is True


def test_a_run_started_while_the_model_downloads_waits_for_it(make_settings, stand_in, monkeypatch):
    """Right after the pod starts: the service has no model yet (error), the download is under way."""
    from app import autocaption
    from studio.atomic import atomic_write_json
    from studio.workspace import Workspace

    monkeypatch.setattr(autocaption, "DOWNLOAD_POLL_S", 0.1)
    client, did = _setup(make_settings, stand_in.url, widths=(60,))
    status_file = Workspace(make_settings().root).model_status_file
    atomic_write_json(status_file, {"models": [{"key": "caption", "name": "Qwen2.5-VL-7B-Instruct-GGUF",
                                                "state": "downloading", "percent": 40.0}]})
    stand_in.status = "error"
    service = client.get("/api/caption-service").get_json()  # the dialog says so, and offers to start
    assert service["status"] == "downloading"
    assert service["reason"] == "Waiting for the caption model: downloading, 40%."
    assert service["download"] == "downloading, 40%"  # the dialog: "Caption model downloading, 40%: start now…"
    assert client.post(f"/api/datasets/{did}/caption", json={"mode": "skip"}).status_code == 202
    waiting = "Waiting for the caption model: downloading, 40%. Captioning starts by itself when it is ready."
    wait_job(client, f"/api/datasets/{did}/caption", key="job", until=lambda j: j["message"] == waiting)
    assert stand_in.requests == []
    stand_in.status = "ready"
    atomic_write_json(status_file, {"models": [{"key": "caption", "name": "Qwen2.5-VL-7B-Instruct-GGUF",
                                                "state": "ready", "percent": 100.0}]})
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed" and _captions(client, did) == {"w60.png": "60px detailed image"}


def test_modes_combine():
    assert combine("overwrite", "old", "new", "detailed") == "new"
    assert combine("append", "old", "new", "detailed") == "old new"
    assert combine("prepend", "old", "new", "tags") == "new, old"
    assert combine("append", None, "new", "tags") == "new"


def test_bad_requests(make_settings, stand_in):
    client, did = _setup(make_settings, stand_in.url, widths=(60,))
    url = f"/api/datasets/{did}/caption"
    assert client.post(url, json={"mode": "sometimes"}).status_code == 422
    assert client.post(url, json={"style": "poem"}).status_code == 422
    assert client.post(url, json={"style": "custom"}).status_code == 422
    assert client.post(url, json={"max_tokens": 5}).status_code == 422
    assert client.delete(url).status_code == 409
    assert client.get(url).get_json() == {"job": None}


def test_service_down_is_refused_up_front(make_settings):
    client, did = _setup(make_settings, f"http://127.0.0.1:{free_port()}", widths=(60,))
    response = client.post(f"/api/datasets/{did}/caption", json={})
    assert response.status_code == 503 and "not answering" in response.get_json()["error"]
    assert client.get(f"/api/datasets/{did}/caption").get_json() == {"job": None}


def test_service_stopping_mid_run_ends_the_run_with_a_clear_message(make_settings, stand_in):
    stand_in.delay = 0.2
    client, did = _setup(make_settings, stand_in.url, widths=tuple(range(60, 70)))
    client.post(f"/api/datasets/{did}/caption", json={})
    deadline = time.monotonic() + 10
    while client.get(f"/api/datasets/{did}/caption").get_json()["job"]["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stand_in.close()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job", timeout=60)
    assert job["status"] == "failed" and "stopped answering" in job["message"]
    assert 1 <= len([c for c in _captions(client, did).values() if c]) < 10  # finished captions are kept
    assert client.get("/health").status_code == 200


def test_cancel(make_settings, stand_in):
    stand_in.delay = 0.3
    client, did = _setup(make_settings, stand_in.url, widths=tuple(range(60, 70)))
    client.post(f"/api/datasets/{did}/caption", json={"mode": "overwrite"})
    time.sleep(0.5)
    second = client.post(f"/api/datasets/{did}/caption", json={})
    assert second.status_code == 409
    assert client.delete(f"/api/datasets/{did}/caption").get_json()["cancelling"]
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "stopped" and job["done"] < 10
    assert job["message"] == f"Stopped at {job['done']} of 10."  # how far it came, not just "Stopped."


def test_edit_during_a_run_is_never_lost(make_settings, stand_in):
    stand_in.block_width = 61
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61, 62))
    client.post(f"/api/datasets/{did}/caption", json={"mode": "overwrite"})
    assert stand_in.blocked.wait(10), "the run never reached the blocking image"
    # while the service works on w61, the user edits it and an image the run has not reached yet
    assert client.put(f"/api/datasets/{did}/captions/w61.png", json={"caption": "my edit"}).status_code == 200
    assert client.put(f"/api/datasets/{did}/captions/w62.png", json={"caption": "my other edit"}).status_code == 200
    stand_in.release.set()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed"
    assert sorted(job["result"]["skipped_edited"]) == ["w61.png", "w62.png"]
    assert _captions(client, did) == {"w60.png": "60px detailed image", "w61.png": "my edit",
                                      "w62.png": "my other edit"}
    assert "kept 2 captions you edited" in job["message"]


def test_a_cut_out_is_captioned_on_white_not_on_what_hides_under_its_transparency(tmp_path):
    import io as _io

    import numpy as np
    from PIL import Image

    from app.imaging import encode_for_caption

    pixels = np.zeros((32, 32, 4), np.uint8)
    pixels[..., :3] = (0, 255, 0)  # green hidden under the transparent half
    pixels[:, 16:] = (200, 0, 0, 255)  # the visible subject
    Image.fromarray(pixels, "RGBA").save(tmp_path / "cut.png")
    sent = Image.open(_io.BytesIO(encode_for_caption(tmp_path / "cut.png", 10_000)))
    assert sent.mode == "RGB"
    left, right = sent.getpixel((4, 16)), sent.getpixel((28, 16))
    assert min(left) > 240 and right[0] > 180 and right[1] < 40  # white where transparent, the subject as is
