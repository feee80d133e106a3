"""Express starts each next stage the moment the one before it ends (the driver is woken by the job's end), not at
its next tick: with ticks ten minutes apart, a run still goes from its upload to training in seconds."""

from __future__ import annotations

import os
import time

from app import express
from studio.jobs import JobStore
from tests.test_express import _new_run, _upload_session, _zip, stand_in, studio  # noqa: F401 - fixtures


def test_each_stage_starts_when_the_one_before_ends(studio, monkeypatch):  # noqa: F811
    monkeypatch.setattr(express, "TICK_S", 600.0)  # only a wake-up moves the chain on
    settings, app, client, made = _new_run(studio)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    session = _upload_session(client, dataset_id, "cats.zip", _zip(3))
    JobStore(settings.root / "studio.db").worker_beat(os.getpid(), "idle")
    assert client.post(f"/api/express/{express_id}/start", json={"sessions": [session]}).status_code == 202
    store = JobStore(settings.root / "studio.db")
    deadline = time.monotonic() + 180  # a generous bound: without the wake-up it would wait 600 s at each stage
    while time.monotonic() < deadline and store.get(express_id).phase != "train":
        time.sleep(0.1)  # not asking the page's API: its answer advances the chain too
    run = client.get(f"/api/express/{express_id}").get_json()
    assert run["express"]["phase"] == "train", run["stages"]
    assert [s["status"] for s in run["stages"][:3]] == ["completed"] * 3
