"""Bulk auto-caption against a caption service that misbehaves: an answer that is not a caption is never written as
one, a service that keeps failing or timing out stops the run instead of grinding through every image, and Undo after
a run never takes back a caption the user typed during it."""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

import app.autocaption
from app.autocaption import SERVICE_FAILURES_IN_A_ROW
from app.captions import CAPTION_MAX
from tests.helpers import free_port
from tests.test_datasets_autocaption import _captions, _setup, stand_in  # noqa: F401 - the fixture
from tests.test_datasets_support import wait_job


class Scripted:
    """A caption service whose /caption answers come from `answer(n)` (n counts from 0): (body, status)."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0
        self.health = {"status": "ready", "reason": None, "queue": 0}
        flask_app = Flask("scripted")

        @flask_app.get("/health")
        def health():
            return jsonify(self.health)

        @flask_app.post("/caption")
        def caption():
            request.get_json()
            n, self.calls = self.calls, self.calls + 1
            body, status = self.answer(n)
            if isinstance(body, str):
                return body, status, {"Content-Type": "text/html"}
            return jsonify(body), status

        self.server = make_server("127.0.0.1", free_port(), flask_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def start(answer):
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("garbage", [{"caption": None}, {"caption": ["a", "b"]}, {"caption": {"text": "x"}},
                                     {"caption": 42}, {"caption": "x" * (CAPTION_MAX + 1)}])
def test_an_answer_that_is_not_a_caption_is_never_written(make_settings, scripted, garbage):
    service = scripted(lambda n: (garbage, 200) if n == 1 else ({"caption": f"caption {n}"}, 200))
    client, did = _setup(make_settings, service.url, widths=(60, 61, 62))
    client.post(f"/api/datasets/{did}/caption", json={})
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed"
    assert _captions(client, did) == {"w60.png": "caption 0", "w61.png": "", "w62.png": "caption 2"}
    assert [e["item"] for e in job["errors"]] == ["w61.png"]
    assert "caption service" in job["errors"][0]["message"]
    assert "1 failed" in job["message"]


@pytest.mark.parametrize("answer", [
    ("<html><body>502 Bad Gateway</body></html>", 502),
    ({"error": "CUDA error: an illegal memory access was encountered"}, 500),
    ({"caption": None}, 200),
])
def test_a_service_failing_on_image_after_image_stops_the_run(make_settings, scripted, answer):
    service = scripted(lambda n: ({"caption": "the first one"}, 200) if n == 0 else answer)
    widths = tuple(range(60, 72))
    client, did = _setup(make_settings, service.url, widths=widths)
    client.post(f"/api/datasets/{did}/caption", json={})
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "failed"
    assert service.calls == 1 + SERVICE_FAILURES_IN_A_ROW  # not one call per image of the dataset
    assert "in a row" in job["message"] and "the run was stopped" in job["message"]
    assert _captions(client, did)["w60.png"] == "the first one"  # what was captioned stays


def test_a_failure_now_and_then_does_not_stop_the_run(make_settings, scripted):
    service = scripted(lambda n: ({"error": "bad"}, 500) if n % 2 else ({"caption": f"caption {n}"}, 200))
    client, did = _setup(make_settings, service.url, widths=tuple(range(60, 68)))
    client.post(f"/api/datasets/{did}/caption", json={})
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed" and service.calls == 8 and "4 failed" in job["message"]


def test_a_service_that_times_out_again_and_again_stops_the_run(make_settings, scripted, monkeypatch):
    def answer(n):
        time.sleep(2)
        return {"caption": "late"}, 200

    service = scripted(answer)
    monkeypatch.setattr(app.autocaption, "READ_SLACK_S", 0.0)  # a 1 s timeout: CAPTION_TIMEOUT_S alone
    client, did = _setup(make_settings, service.url, widths=tuple(range(60, 80)), CAPTION_TIMEOUT_S=1)
    client.post(f"/api/datasets/{did}/caption", json={})
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job", timeout=30)
    assert job["status"] == "failed" and service.calls == SERVICE_FAILURES_IN_A_ROW
    assert "took too long" in job["message"]
    assert all(caption == "" for caption in _captions(client, did).values())


def test_undo_after_a_run_keeps_a_caption_typed_during_it(make_settings, stand_in):  # noqa: F811
    stand_in.block_width = 61
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61))
    client.put(f"/api/datasets/{did}/captions/w60.png", json={"caption": "before the run"})
    client.post(f"/api/datasets/{did}/caption", json={"mode": "overwrite"})
    assert stand_in.blocked.wait(10)
    # w60 is captioned by now; the user rewrites it while the run works on w61
    assert _captions(client, did)["w60.png"] == "60px detailed image"
    typed = client.put(f"/api/datasets/{did}/captions/w60.png", json={"caption": "typed during the run"})
    assert typed.status_code == 200
    stand_in.release.set()
    assert wait_job(client, f"/api/datasets/{did}/caption", key="job")["status"] == "completed"
    undone = client.post(f"/api/datasets/{did}/captions/undo").get_json()
    assert undone["kept"] == ["w60.png"] and undone["restored"] == 1
    assert _captions(client, did) == {"w60.png": "typed during the run", "w61.png": ""}


def test_max_tokens_the_service_would_refuse_is_refused_before_the_run(make_settings, stand_in):  # noqa: F811
    from caption_service.llm import MAX_NEW_TOKENS

    client, did = _setup(make_settings, stand_in.url, widths=(60,))
    response = client.post(f"/api/datasets/{did}/caption", json={"max_tokens": MAX_NEW_TOKENS + 1})
    assert response.status_code == 422 and f"from 8 to {MAX_NEW_TOKENS}" in response.get_json()["error"]
    assert client.get(f"/api/datasets/{did}/caption").get_json() == {"job": None}
    assert client.post(f"/api/datasets/{did}/caption", json={"max_tokens": MAX_NEW_TOKENS}).status_code == 202
    assert wait_job(client, f"/api/datasets/{did}/caption", key="job")["status"] == "completed"


def test_an_image_deleted_before_its_turn_says_so(make_settings, stand_in):  # noqa: F811
    stand_in.block_width = 60
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61, 62))
    client.post(f"/api/datasets/{did}/caption", json={})
    assert stand_in.blocked.wait(10)
    assert client.delete(f"/api/datasets/{did}/images/w61.png").status_code == 200
    stand_in.release.set()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["errors"] == [{"item": "w61.png", "message": "the image was removed during the run"}]
    assert _captions(client, did) == {"w60.png": "60px detailed image", "w62.png": "62px detailed image"}


def test_a_model_that_failed_to_load_mid_run_stops_the_run_with_its_reason(make_settings, scripted):
    reason = "The caption model could not be loaded (corrupt, incomplete or not a Qwen2.5-VL GGUF)."

    def answer(n):
        if n == 0:
            service.health = {"status": "error", "reason": reason, "queue": 0}  # unloaded when idle, then this
            return {"caption": "the first one"}, 200
        return {"error": f"The caption model is not available: {reason}"}, 503

    service = scripted(answer)
    client, did = _setup(make_settings, service.url, widths=(60, 61, 62))
    client.post(f"/api/datasets/{did}/caption", json={})
    started = time.monotonic()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job", timeout=30)
    assert time.monotonic() - started < 10  # not LOADING_WAIT_S (15 minutes) of waiting for a model that is not coming
    assert job["status"] == "failed" and reason in job["message"]
    assert _captions(client, did) == {"w60.png": "the first one", "w61.png": "", "w62.png": ""}
