"""Wrong types and junk on every route of every service, with real ids: a clear JSON error, never a 500.

The route list comes from each app's url_map, so a new route is covered the day it lands. Ids are real (a
dataset with images and a caption, a deleted image batch, a deleted dataset, an upload session, a queued
job and a render of it, an express run), so the views get past their 404s and read the body. Deletes go
last, the deepest first, so they do not turn the other routes into 404s.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import url_for

import app as datasets_pkg
import caption_service
import trainer
from tests.test_datasets_support import image_bytes, upload
from tests.test_trainer_worker import TINY_CONFIG, make_export

# every key a view reads from a body, each with values of the wrong type or shape
KEYS = ["name", "dataset", "files", "recipe", "config", "webhook_url", "trigger_word", "dataset_version", "apply",
        "regex", "prompts", "names", "cover", "prompt", "prepend", "append", "prefix", "mode", "style", "kind",
        "export", "bucket", "find", "replace", "case_sensitive", "caption", "include_duplicates", "more_steps",
        "sessions", "separator", "filename", "size", "image", "max_tokens", "steps", "resumable", "label",
        "strengths", "seed", "width", "height", "lora", "guidance_scale"]
VALUES = [None, 5, -1, 1.5, 10**30, "", "x", [], {}, [None], [5], [[1]], {"a": 1}, True, "../../etc/passwd",
          ["../../etc/passwd"], "a\x00b", "é" * 3000]
BODIES = ["[]", '"text"', "5", "null", "{}", "true"]
QUERY_KEYS = ["offset", "limit", "q", "filter", "after", "thumb", "for", "wait", "dataset", "size"]
QUERY_VALUES = ["-1", "x", "1e999", "99999999999999999999999", "", "nan", "../..", "%00"]
STREAMS = {"events.all_events", "events.job_events"}  # long-lived responses: covered by their own tests


@pytest.fixture
def studio(make_settings, caplog):
    settings = make_settings(STUDIO_DEMO=1, CAPTION_URL="http://127.0.0.1:9")
    apps = {"datasets": datasets_pkg.create_app(settings), "trainer": trainer.create_app(settings),
            "caption": caption_service.create_app(settings)}
    d, t = apps["datasets"].test_client(), apps["trainer"].test_client()
    dataset = d.post("/api/datasets", json={"name": "cat", "trigger_word": "tok"}).get_json()["id"]
    upload(d, dataset, [(f"i{i}.png", image_bytes(i, size=(300, 300))) for i in range(4)] + [("i0.txt", b"a cat")])
    batch = d.post(f"/api/datasets/{dataset}/images/delete", json={"names": ["i3.png"]}).get_json()["trash"]
    gone = d.post("/api/datasets", json={"name": "gone"}).get_json()["id"]
    entry = d.delete(f"/api/datasets/{gone}").get_json()["trash"]
    sid = d.post(f"/api/datasets/{dataset}/uploads", json={"filename": "z.png", "size": 10}).get_json()["id"]
    make_export(settings.root)
    job = t.post("/api/jobs", json={"name": "j", "recipe": "zimage-turbo", "dataset": "tiny-set",
                                    "config": TINY_CONFIG}).get_json()["job"]["id"]
    render = apps["trainer"].extensions["job_store"].create("render", parent_id=job, config={})[0].id
    express = d.post("/api/express", json={"trigger_word": "tok", "kind": "person"}).get_json()["express"]["id"]
    ids = {"dataset_id": dataset, "job_id": job, "express_id": express, "name": "i0.png", "image": "i0.png",
           "sid": sid, "batch": batch, "entry": entry, "render_id": render, "recipe_id": "zimage-turbo", "n": "0",
           "filename": "studio.css", "step": "120", "index": "0"}
    caplog.set_level(logging.ERROR)
    return apps, ids, caplog


def _calls(apps: dict, ids: dict):
    """(service, endpoint, method, url) for every route."""
    calls = []
    for service, flask_app in apps.items():
        for rule in flask_app.url_map.iter_rules():
            if rule.endpoint in STREAMS:
                continue
            with flask_app.test_request_context():
                url = url_for(rule.endpoint, **{name: ids.get(name, "x1") for name in rule.arguments})
            calls += [(service, rule.endpoint, method, url) for method in rule.methods - {"HEAD", "OPTIONS"}]
    # deletes last, the deepest first (a render before the job that holds it)
    return sorted(calls, key=lambda call: (call[2] == "DELETE", call[0], -call[3].count("/") * (call[2] == "DELETE"),
                                           call[3], call[2]))


def _requests(method: str):
    if method == "GET":
        for key in QUERY_KEYS:
            for value in QUERY_VALUES:
                yield f"?{key}={value}", {}
        return
    for body in BODIES:
        yield "", {"data": body, "content_type": "application/json"}
    for key in KEYS:
        for value in VALUES:
            yield "", {"data": json.dumps({key: value}), "content_type": "application/json"}
    yield "", {"data": {"files": (io.BytesIO(b"junk"), "../x.png")}, "content_type": "multipart/form-data"}


def test_no_route_answers_500_to_junk(studio):
    apps, ids, caplog = studio
    clients = {service: flask_app.test_client() for service, flask_app in apps.items()}
    failures, answered = [], set()
    for service, endpoint, method, url in _calls(apps, ids):
        for query, kwargs in _requests(method):
            response = clients[service].open(url + query, method=method, **kwargs)
            status = response.status_code
            if status != 404:
                answered.add(endpoint)
            said = (response.get_json(silent=True) or {}).get("error")
            plain_error = url.startswith("/api/") and status >= 400 and not said
            response.close()  # a streamed answer (the dataset ZIP) ends here
            if status in (500, 502, 504) or plain_error:  # 503: the caption model is not there; 507: disk full
                failures.append(f"{method} {url}{query} {str(kwargs.get('data'))[:80]} -> {status}")
    assert failures == [], "\n".join(failures[:40])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    # the real ids were found: the views read the bodies instead of answering 404
    for endpoint in ("datasets.update_dataset", "images.delete_many", "captions.put_caption", "trash.restore_batch",
                     "uploads.put_chunk", "jobs.continue_job", "jobs.job_log", "express.start_express",
                     "renders.create_render", "renders.delete_render"):
        assert endpoint in answered, endpoint
