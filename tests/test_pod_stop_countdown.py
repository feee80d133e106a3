"""The minute before the pod stops by itself is said where people look: GET /api/pod and GET /api/express/pod give
"stops_in_s" while the worker is about to stop it (the pages count down beside "Stop the pod when ... is done", and
unticking it keeps the pod running), and nothing when it will not (work under way, the choice off, a training job
that ended before the worker started, a stop already asked). Before, someone downloading their LoRA from the page
the job ended on had no sign the pod would stop under the download a minute later. A local server stands in for
RunPod."""

from __future__ import annotations

import os
import time

import app as datasets_app
import trainer as trainer_app
from studio.jobs import JobStore
from tests.test_pod_price import _on_runpod, runpod  # noqa: F401 - the RunPod stand-in, a fixture
from trainer import podstop


def _trained(studio_root, ended_ago: float = 5.0) -> JobStore:
    """A worker (this process) that started ten minutes ago, and a training job it ended `ended_ago` seconds ago."""
    store = JobStore(studio_root / "studio.db")
    store.worker_beat(os.getpid(), "idle")
    with store.write() as conn:
        conn.execute("UPDATE workers SET started_at = ? WHERE pid = ?", (time.time() - 600, os.getpid()))
    job, _ = store.create("train", name="cats", dataset="d", total=1)
    store.finish(job.id, "failed", error="a test job")
    with store.write() as conn:
        conn.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (time.time() - ended_ago, job.id))
    return store


def test_the_minute_before_the_stop_is_counted_down_on_both_services(make_settings, studio_root,
                                                                     runpod):  # noqa: F811
    settings = _on_runpod(make_settings, runpod)
    _trained(studio_root, ended_ago=5)
    trainer = trainer_app.create_app(settings).test_client()
    assert "stops_in_s" not in trainer.get("/api/pod").get_json()  # the choice is off: no stop comes
    chosen = trainer.put("/api/pod/auto-stop", json={"on": True}).get_json()
    assert 50 <= chosen["stops_in_s"] <= 55  # a minute after the job ended, 5 s ago
    assert 50 <= trainer.get("/api/pod").get_json()["stops_in_s"] <= 55
    express = datasets_app.create_app(settings).test_client().get("/api/express/pod").get_json()
    assert 50 <= express["stops_in_s"] <= 55
    assert "stops_in_s" not in trainer.put("/api/pod/auto-stop", json={"on": False}).get_json()


def test_no_countdown_when_the_worker_will_not_stop_the_pod(make_settings, studio_root, runpod):  # noqa: F811
    settings = _on_runpod(make_settings, runpod)
    podstop.choose_stop_when_idle(settings, True)
    store = _trained(studio_root, ended_ago=90)
    assert podstop.stops_in(settings) == 0  # any moment now
    captions, _ = store.create("caption", name="captions", dataset="d", total=3)
    assert podstop.stops_in(settings) is None  # work under way
    store.finish(captions.id, "completed")
    assert 55 <= podstop.stops_in(settings) <= 60  # a minute after that work
    with store.write() as conn:  # the worker started after the job ended: it does not stop the pod for it
        conn.execute("UPDATE workers SET started_at = ?", (time.time(),))
        conn.execute("UPDATE jobs SET finished_at = ?", (time.time() - 90,))
    assert podstop.stops_in(settings) is None
    with store.write() as conn:
        conn.execute("UPDATE workers SET started_at = ?", (time.time() - 600,))
    assert podstop.stops_in(settings) == 0
    runpod.stop_code = 401
    podstop.stop_pod(settings, retry_delays_s=())  # asked already (the dashboard says how it went)
    assert podstop.stops_in(settings) is None
    assert "stops_in_s" not in trainer_app.create_app(settings).test_client().get("/api/pod").get_json()
