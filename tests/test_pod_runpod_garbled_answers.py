"""RunPod (or a proxy in front of it) answering something that is not HTTP, a cut-short answer, a RUNPOD_API_URL
that is not a web address: a stop asked for is then a refused stop, kept and said in a sentence, never an exception
that kills the worker (supervisord starts it again having forgotten the stop: the pod bills all night, unseen); the
price is then unknown, never an error. A local server that answers garbage stands in for RunPod."""

from __future__ import annotations

import socket
import threading

import pytest

import trainer as trainer_app
from studio.pod_price import read_runpod_price
from tests.test_trainer_worker import _job, _worker
from trainer import podstop


class GarbledRunPod:
    """Answers every request with `answer` (not HTTP: http.client raises BadStatusLine), counting the requests."""

    def __init__(self, answer: bytes = b"garbage, not HTTP\r\n\r\n"):
        self.answer = answer
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(self.answer)


@pytest.fixture
def garbled():
    fake = GarbledRunPod()
    yield fake
    fake.sock.close()


def _on(make_settings, url: str, **more):
    return make_settings(RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key", RUNPOD_API_URL=url, **more)


def test_an_answer_that_is_not_http_is_a_refused_stop_asked_again(make_settings, garbled):
    settings = _on(make_settings, garbled.url)
    assert podstop.stop_pod(settings, retry_delays_s=(0.01,)) is False
    assert garbled.requests == 2  # a proxy's hiccup: asking again may help
    last = podstop.last_stop(settings)
    assert last["ok"] is False and last["error"].startswith("RunPod's answer could not be read (garbage, not HTTP)")


def test_the_worker_outlives_a_garbled_answer_and_keeps_it_for_the_dashboard(make_settings, garbled):
    settings = _on(make_settings, garbled.url)
    podstop.choose_stop_when_idle(settings, True)
    worker = _worker(settings, pod_stop_grace_s=0)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    worker._maybe_stop_pod()  # raised BadStatusLine out of the worker's loop
    assert garbled.requests >= 1 and podstop.last_stop(settings)["ok"] is False
    state = trainer_app.create_app(settings).test_client().get("/api/pod").get_json()
    assert "could not be read" in state["last_stop"]["error"]


def test_the_button_says_a_garbled_answer_in_a_sentence(make_settings, garbled):
    client = trainer_app.create_app(_on(make_settings, garbled.url)).test_client()
    answer = client.post("/api/pod/stop")
    assert answer.status_code == 502
    assert answer.get_json()["error"].startswith("The pod did not stop: RunPod's answer could not be read")


def test_a_runpod_api_url_that_is_not_a_web_address_is_said_and_not_asked_again(make_settings):
    settings = _on(make_settings, "rest.runpod.io/v1")  # the scheme left out
    assert podstop.stop_pod(settings, retry_delays_s=(5.0,)) is False  # at once: asking again cannot help
    error = podstop.last_stop(settings)["error"]
    assert error.startswith("RUNPOD_API_URL (rest.runpod.io/v1) is not a web address") and "rp-key" not in error


def test_a_garbled_price_answer_is_no_price(make_settings, garbled):
    assert read_runpod_price(_on(make_settings, garbled.url)) is None


def test_a_gateways_web_page_is_not_pasted_into_the_sentence(make_settings, garbled):
    page = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
    garbled.answer = (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(page), page))
    client = trainer_app.create_app(_on(make_settings, garbled.url)).test_client()
    answer = client.post("/api/pod/stop")
    assert answer.status_code == 502
    assert answer.get_json()["error"] == ("The pod did not stop: RunPod answered HTTP 502. It is still running: "
                                          "stop it from RunPod's console.")
