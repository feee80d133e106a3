"""Changes with the login cookie are accepted only from the studio's own origins (studio.origin_guard).

The real-browser version (a page on another port of the same host) is tests/test_browser_security.py.
"""

from __future__ import annotations

import pytest

import app as datasets_pkg
import caption_service
import trainer
from tests.test_auth import FACTORIES, routes_of
from tests.test_trainer_worker import TINY_CONFIG, make_export

BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
BEARER = {"Authorization": "Bearer pw"}


def _logged_in(app, base_url: str = "http://localhost"):
    client = app.test_client()
    response = client.post("/login", data={"password": "pw"}, base_url=base_url)
    assert response.status_code == 302, "login through the form failed"
    return client


def _dataset_count(client) -> int:
    return len(client.get("/api/datasets", headers=BEARER).get_json()["datasets"])


@pytest.fixture
def datasets(make_settings):
    return datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="pw"))


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://localhost"}, 201),                  # the page's own origin
    ({"Origin": "http://localhost:3000"}, 201),             # the datasets port
    ({"Origin": "http://localhost:8675"}, 201),             # the trainer port: the studio trusts its own ports
    ({"Origin": "http://localhost:8188"}, 403),             # ComfyUI on the same host
    ({"Origin": "http://localhost:11435"}, 403),            # the caption service serves no pages
    ({"Origin": "http://localhost:8888"}, 403),             # any other tool on the pod
    ({"Origin": "https://evil.example"}, 403),
    ({"Origin": "null"}, 403),                              # sandboxed frames, data: URLs
    ({"Sec-Fetch-Site": "same-origin"}, 201),
    ({"Sec-Fetch-Site": "none"}, 201),                      # typed by the user
    ({"Sec-Fetch-Site": "same-site"}, 403),                 # another port, no Origin to tell which
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({}, 403),                                              # the cookie without any browser header
])
def test_cookie_changes_only_from_the_studios_own_origins(datasets, headers, status):
    client = _logged_in(datasets)
    response = client.post("/api/datasets", json={"name": "cat"}, headers=headers)
    assert response.status_code == status, response.get_json()
    if status == 403:
        assert "Refused" in response.get_json()["error"] and response.get_json()["details"] == []
        assert _dataset_count(client) == 0


def test_every_change_route_of_every_service_refuses_a_foreign_origin(make_settings):
    for name, factory in FACTORIES.items():
        app = factory(make_settings(STUDIO_PASSWORD="pw"))
        client = _logged_in(app)
        checked = 0
        for endpoint, method, url in routes_of(app):
            if method not in BODY_METHODS:
                continue
            response = client.open(url, method=method, headers={"Origin": "http://localhost:8188"})
            assert response.status_code == 403, f"{name}: {method} {url} ({endpoint}) answered {response.status_code}"
            checked += 1
        assert checked, f"{name} has no change routes"


def test_bearer_clients_are_not_affected(datasets):
    client = datasets.test_client()
    foreign = {"Origin": "http://localhost:8188"}
    assert client.post("/api/datasets", json={"name": "api"}, headers=BEARER).status_code == 201
    assert client.post("/api/datasets", json={"name": "api2"}, headers={**BEARER, **foreign}).status_code == 201
    wrong = client.post("/api/datasets", json={"name": "no"}, headers={"Authorization": "Bearer nope", **foreign})
    assert wrong.status_code == 401
    assert _dataset_count(client) == 2


def test_open_studio_is_guarded_too(make_settings):
    client = datasets_pkg.create_app(make_settings()).test_client()
    foreign = client.post("/api/datasets", json={"name": "x"}, headers={"Origin": "http://localhost:8188"})
    assert foreign.status_code == 403
    assert client.post("/api/datasets", json={"name": "x"}, headers={"Origin": "http://localhost"}).status_code == 201
    assert client.post("/api/datasets", json={"name": "curl"}).status_code == 201  # scripts send no Origin


@pytest.mark.parametrize("origin, status", [
    ("https://abc123-3000.proxy.runpod.net", 201),
    ("https://abc123-8675.proxy.runpod.net", 201),
    ("https://abc123-8188.proxy.runpod.net", 403),
    ("https://abc123-11435.proxy.runpod.net", 403),
    ("https://zzz999-8675.proxy.runpod.net", 403),          # another pod
    ("https://abc123-8675.proxy.runpod.net.evil.example", 403),
    ("http://abc123-3000.proxy.runpod.net:8188", 403),
])
def test_runpod_proxy_names(datasets, origin, status):
    base = "https://abc123-3000.proxy.runpod.net"
    client = _logged_in(datasets, base)
    response = client.post("/api/datasets", json={"name": "p"}, headers={"Origin": origin}, base_url=base)
    assert response.status_code == status


def test_proxy_that_rewrites_the_host(make_settings):
    """Behind a proxy the service may see an internal Host: the forwarded host or RUNPOD_POD_ID still match."""
    app = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD="pw", RUNPOD_POD_ID="abc123"))
    internal = "http://100.64.0.7:3000"
    client = _logged_in(app, internal)
    forwarded = {"X-Forwarded-Host": "studio.example.com", "X-Forwarded-Proto": "https"}
    ok = client.post("/api/datasets", json={"name": "a"}, base_url=internal,
                     headers={"Origin": "https://studio.example.com", **forwarded})
    assert ok.status_code == 201
    other_port = client.post("/api/datasets", json={"name": "b"}, base_url=internal,
                             headers={"Origin": "https://studio.example.com:8188", **forwarded})
    assert other_port.status_code == 403
    for origin, status in (("https://abc123-8675.proxy.runpod.net", 201),
                           ("https://abc123-8188.proxy.runpod.net", 403)):
        response = client.post("/api/datasets", json={"name": origin[8:20]}, base_url=internal,
                               headers={"Origin": origin})
        assert response.status_code == status, origin


def test_job_controls_refuse_another_port(make_settings):
    app = trainer.create_app(make_settings(STUDIO_PASSWORD="pw", STUDIO_DEMO=1))
    make_export(app.config["STUDIO_SETTINGS"].root)
    client = _logged_in(app)
    created = client.post("/api/jobs", headers=BEARER, json={"name": "victim", "recipe": "zimage-turbo",
                                                               "dataset": "tiny-set", "config": TINY_CONFIG})
    assert created.status_code == 201, created.get_json()
    job_id = created.get_json()["job"]["id"]
    foreign = {"Origin": "http://localhost:8188"}
    for action in ("stop", "resume", "sample", "save", "clone"):
        assert client.post(f"/api/jobs/{job_id}/{action}", headers=foreign).status_code == 403, action
    assert client.delete(f"/api/jobs/{job_id}", headers=foreign).status_code == 403
    jobs = client.get("/api/jobs", headers=BEARER).get_json()["jobs"]
    assert [(job["id"], job["status"]) for job in jobs] == [(job_id, "queued")]
    # the trainer's own page may
    stopped = client.post(f"/api/jobs/{job_id}/stop", headers={"Origin": "http://localhost"})
    assert stopped.status_code == 200 and stopped.get_json()["job"]["status"] == "stopped"


def test_caption_service_refuses_another_port(make_settings):
    app = caption_service.create_app(make_settings(STUDIO_PASSWORD="pw"))
    client = _logged_in(app)
    response = client.post("/caption", json={"image": "aGVsbG8="}, headers={"Origin": "http://localhost:8188"})
    assert response.status_code == 403
    # the dataset manager and the worker call it server to server with the password
    assert client.post("/caption", json={}, headers=BEARER).status_code == 422
