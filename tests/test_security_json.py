"""Every JSON body is parsed under a size and a depth limit: 400/413 with a sentence, never a 500."""

from __future__ import annotations

import logging
import time

import pytest

import app as datasets_pkg
import caption_service
import trainer
from studio.json_limits import MAX_DEPTH, JsonBodyError, nesting_depth, parse_json
from tests.test_auth import FACTORIES, routes_of
from tests.test_trainer_worker import TINY_CONFIG, make_export

BEARER = {"Authorization": "Bearer pw"}
NESTED = '{"a":' * 100_000 + "1" + "}" * 100_000
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def no_error_logs(caplog):
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_nested_json_is_400_on_every_route(name, make_settings, no_error_logs):
    app = FACTORIES[name](make_settings(STUDIO_PASSWORD="pw", STUDIO_DEMO=1))
    client = app.test_client()
    checked = []
    for endpoint, method, url in routes_of(app):
        if method not in BODY_METHODS:
            continue
        response = client.open(url, method=method, data=NESTED, content_type="application/json", headers=BEARER)
        assert response.status_code == 400, f"{method} {url} ({endpoint}) answered {response.status_code}"
        assert "nests deeper than 64 levels" in response.get_json()["error"]
        checked.append(endpoint)
    assert checked


def test_nested_json_on_routes_with_real_ids(make_settings, no_error_logs):
    """Past the 404s: a real dataset and a real job, so the views would read the body if the check did not."""
    settings = make_settings(STUDIO_PASSWORD="pw", STUDIO_DEMO=1)
    datasets = datasets_pkg.create_app(settings).test_client()
    dataset_id = datasets.post("/api/datasets", json={"name": "cat"}, headers=BEARER).get_json()["id"]
    make_export(settings.root)
    jobs = trainer.create_app(settings).test_client()
    job_id = jobs.post("/api/jobs", headers=BEARER, json={"name": "j", "recipe": "zimage-turbo", "dataset": "tiny-set",
                                                           "config": TINY_CONFIG}).get_json()["job"]["id"]
    base = f"/api/datasets/{dataset_id}"
    calls = [(datasets, "PATCH", base), (datasets, "POST", f"{base}/caption"), (datasets, "POST", f"{base}/export"),
             (datasets, "POST", f"{base}/captions/replace"), (jobs, "POST", "/api/jobs/validate"),
             (jobs, "POST", "/api/jobs"), (jobs, "POST", f"/api/jobs/{job_id}/clone"),
             (jobs, "POST", "/api/config/render"), (jobs, "POST", "/api/config/parse")]
    for client, method, url in calls:
        response = client.open(url, method=method, data=NESTED, content_type="application/json", headers=BEARER)
        assert response.status_code == 400, f"{method} {url}: {response.status_code}"
    assert len(jobs.get("/api/jobs", headers=BEARER).get_json()["jobs"]) == 1
    # a clone still works without a body, and a malformed one is 400, not ignored
    assert jobs.post(f"/api/jobs/{job_id}/clone", headers=BEARER).status_code == 201
    bad = jobs.post(f"/api/jobs/{job_id}/clone", data="{oops", content_type="application/json", headers=BEARER)
    assert bad.status_code == 400 and "not valid JSON" in bad.get_json()["error"]


def test_too_big_is_413_and_the_caption_service_takes_images(make_settings, no_error_logs):
    settings = make_settings(STUDIO_PASSWORD="pw")
    app = datasets_pkg.create_app(settings)
    app.config["STUDIO_JSON_MAX_BYTES"] = 1000
    client = app.test_client()
    big = client.post("/api/datasets", json={"name": "x" * 1000}, headers=BEARER)
    assert big.status_code == 413 and "larger than" in big.get_json()["error"]
    assert client.post("/api/datasets", json={"name": "small"}, headers=BEARER).status_code == 201
    caption = caption_service.create_app(settings)
    assert caption.config["STUDIO_JSON_MAX_BYTES"] >= caption.config["MAX_CONTENT_LENGTH"]
    assert datasets_pkg.create_app(settings).config["STUDIO_JSON_MAX_BYTES"] < caption.config["MAX_CONTENT_LENGTH"]


def test_other_bodies_are_clear_400s(make_settings):
    client = trainer.create_app(make_settings(STUDIO_PASSWORD="pw")).test_client()
    cases = [("{not json", "application/json", "not valid JSON"), ("[1, 2]", "application/json", "JSON object"),
             ("", "application/json", "empty"), ("name=x", "application/x-www-form-urlencoded", "must be JSON"),
             ("1" * 5000, "application/json", "not valid JSON")]  # beyond Python's int digit limit
    for data, content_type, words in cases:
        response = client.post("/api/jobs/validate", data=data, content_type=content_type, headers=BEARER)
        assert response.status_code == 400 and words in response.get_json()["error"], (data[:20], response.get_json())


def test_depth_is_measured_outside_strings():
    assert nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert nesting_depth(b'{"a": "[[[[{{{{", "b": "\\"[[[["}') == 1
    assert nesting_depth(b'"no containers"') == 0
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(at_limit.encode()) is not None
    with pytest.raises(JsonBodyError, match="deeper"):
        parse_json(("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode())
    assert parse_json(b'{"s": "' + b"[" * 1000 + b'"}') == {"s": "[" * 1000}


def test_depth_scan_stays_linear_on_hostile_input():
    """An unterminated string full of escaped quotes made a naive string regex quadratic (hours for 4 MB)."""
    hostile = b"[" * (MAX_DEPTH + 1) + b'"' + b'\\"' * 2_000_000
    started = time.monotonic()
    with pytest.raises(JsonBodyError):
        parse_json(hostile)
    assert time.monotonic() - started < 20
