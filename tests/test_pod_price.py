"""What the machine costs an hour: GPU_PRICE_PER_HOUR when set, else the pod's own price read from RunPod's REST
API in the background (a local HTTP server stands in for RunPod), nothing anywhere else or when RunPod does not
answer; and the trainer's API hands it to the pages beside its times."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import trainer as trainer_app
from studio.pod_price import PodPrice, Price, read_runpod_price


class FakeRunPod:
    """GET /v1/pods/<id>: `answer` (code, body); POST (a stop): `stop_code`. Records each request's method, path
    and Authorization header."""

    def __init__(self):
        self.answer: tuple[int, bytes] = (200, json.dumps({"id": "pod123", "adjustedCostPerHr": 2.49,
                                                           "costPerHr": "2.69"}).encode())
        self.seen: list[tuple[str, str]] = []
        self.stops: list[tuple[str, str]] = []
        self.stop_code = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the standard library's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.stops.append((self.path, self.headers.get("Authorization", "")))
                self.send_response(fake.stop_code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self):  # noqa: N802 - the standard library's name
                fake.seen.append((self.path, self.headers.get("Authorization", "")))
                code, body = fake.answer
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def runpod():
    fake = FakeRunPod()
    yield fake
    fake.server.shutdown()


def _on_runpod(make_settings, runpod, **more):
    return make_settings(RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key", RUNPOD_API_URL=runpod.url, **more)


def _eventually(read, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (value := read()) is None:
        assert time.monotonic() < deadline, "no price came"
        time.sleep(0.02)
    return value


def test_the_price_set_wins_and_nothing_is_asked(make_settings, runpod):
    price = PodPrice(_on_runpod(make_settings, runpod, GPU_PRICE_PER_HOUR="0.79")).current()
    assert price == Price(0.79, "setting") and runpod.seen == []


def test_without_a_price_or_runpod_there_is_none(make_settings):
    prices = PodPrice(make_settings())
    assert not prices.knowable and prices.current() is None


def test_a_pods_price_is_read_from_runpod_in_the_background_and_kept_an_hour(make_settings, runpod):
    prices = PodPrice(_on_runpod(make_settings, runpod))
    assert prices.knowable
    first = prices.current()  # never waits: the read runs on its own thread
    assert first is None or first == Price(2.49, "runpod")
    assert _eventually(prices.current) == Price(2.49, "runpod")  # what is billed: adjustedCostPerHr
    assert runpod.seen == [("/v1/pods/pod123", "Bearer rp-key")]
    for _ in range(5):
        prices.current()
    assert len(runpod.seen) == 1  # read again only once it is an hour old


@pytest.mark.parametrize("answer, expected", [
    ((200, b'{"costPerHr": "0.74"}'), 0.74),  # the REST API gives costPerHr as text
    ((200, b'{"adjustedCostPerHr": null, "costPerHr": 1.5}'), 1.5),
    ((200, b'{"adjustedCostPerHr": "NaN"}'), None),
    ((200, b'{"costPerHr": -3}'), None),
    ((200, b'{"id": "pod123"}'), None),
    ((200, b'[1, 2]'), None),
    ((200, b'<html>not json</html>'), None),
    ((401, b'{"error": "unauthorized"}'), None),
    ((500, b''), None),
])
def test_what_runpod_answers_gives_a_price_or_none_never_an_error(make_settings, runpod, answer, expected):
    runpod.answer = answer
    price = read_runpod_price(_on_runpod(make_settings, runpod))
    assert (price.per_hour if price else None) == expected


def test_a_failed_read_keeps_the_last_price_and_an_unreachable_runpod_gives_none(make_settings, runpod):
    prices = PodPrice(_on_runpod(make_settings, runpod))
    assert prices.read_now() == Price(2.49, "runpod")
    runpod.answer = (503, b"")
    assert prices.read_now() == Price(2.49, "runpod")  # a pod's price rarely changes: the last one stands
    gone = PodPrice(make_settings(RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="k", RUNPOD_API_URL="http://127.0.0.1:9/v1"))
    assert gone.read_now() is None


def test_the_trainer_api_gives_the_price_beside_its_times(make_settings, runpod):
    client = trainer_app.create_app(_on_runpod(make_settings, runpod)).test_client()
    body = _eventually(lambda: client.get("/api/jobs").get_json()["price"])
    assert body == {"per_hour": 2.49, "source": "runpod"}
    assert client.post("/api/jobs/validate", json={"dataset": "none"}).get_json()["price"] == body
    fixed = trainer_app.create_app(make_settings(GPU_PRICE_PER_HOUR="1.2")).test_client()
    assert fixed.get("/api/jobs").get_json()["price"] == {"per_hour": 1.2, "source": "setting"}
    assert trainer_app.create_app(make_settings()).test_client().get("/api/jobs").get_json()["price"] is None


def test_a_price_read_that_ends_between_the_two_looks_is_given(make_settings, runpod, monkeypatch):
    """/api/pod read the price (none yet, a read starting), then whether a read was under way: when RunPod answered in
    between, the page got neither the price nor a sign to ask again, and showed none for 30 s."""
    from studio.pod_price import PodPrice

    real = PodPrice.pending

    def after_the_read_ended(self):
        deadline = time.monotonic() + 10
        while self._reading and time.monotonic() < deadline:  # the background read ends first
            time.sleep(0.01)
        return real.fget(self)

    monkeypatch.setattr(PodPrice, "pending", property(after_the_read_ended))
    client = trainer_app.create_app(_on_runpod(make_settings, runpod)).test_client()
    answer = client.get("/api/pod").get_json()
    assert answer["price"] == {"per_hour": 2.49, "source": "runpod"} or answer["price_pending"], answer
