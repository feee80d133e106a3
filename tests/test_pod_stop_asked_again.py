"""A stop RunPod could not take (its API down for a quarter of an hour, timing out) is asked again every ten minutes
while nothing runs, instead of never: the pod would bill all night. The webhooks hear of the failure once and of the
stop when it works; a refusal that asking again cannot help (a wrong key) is not asked again."""

from __future__ import annotations

import json
import time

from tests.test_trainer_worker import _job, _worker, receiver  # noqa: F401 - a fixture
from trainer import podstop


def _on_runpod(make_settings, runpod, hook=None):
    return make_settings(STOP_POD_WHEN_IDLE=1, RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key",
                         RUNPOD_API_URL=runpod.url + "/v1", **({"WEBHOOK_URL": hook.url + "/hook"} if hook else {}))


def _idle_worker(make_settings, runpod, hook, monkeypatch):
    monkeypatch.setattr(podstop.time, "sleep", lambda _s: None)  # the quick tries' waits
    worker = _worker(_on_runpod(make_settings, runpod, hook), pod_stop_grace_s=60)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    worker._idle_since = time.monotonic() - 61
    return worker


def _stops(runpod):
    return [r for r in runpod.requests if r["path"] == "/v1/pods/pod123/stop"]


def test_runpod_down_for_a_while_is_asked_again_later(make_settings, receiver, monkeypatch):  # noqa: F811
    runpod, hook = receiver(codes=[503] * 6), receiver()
    worker = _idle_worker(make_settings, runpod, hook, monkeypatch)
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 3  # the quick tries
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 3  # not again at once
    worker._pod_stop_again_at -= podstop.RETRY_LATER_S  # ten minutes later, still down
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 6
    worker._pod_stop_again_at -= podstop.RETRY_LATER_S  # RunPod is back
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 7 and podstop.last_stop(worker.settings)["ok"]
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 7  # stopped: nothing more to ask
    news = [json.loads(r["body"]) for r in hook.wait(3)]
    pod_news = [item["event"] for item in news if item["event"].startswith("pod.")]
    assert pod_news == ["pod.stop_failed", "pod.stopping"]  # the failure once, not at every try
    failed = next(item for item in news if item["event"] == "pod.stop_failed")
    assert "asks again every 10 minutes" in json.dumps(failed)


def test_work_meanwhile_makes_the_stop_after_it_a_fresh_one(make_settings, receiver, monkeypatch):  # noqa: F811
    runpod = receiver(codes=[503] * 3)
    worker = _idle_worker(make_settings, runpod, None, monkeypatch)
    worker._maybe_stop_pod()
    captions, _ = worker.store.create("caption", name="captions", dataset="d", total=4)
    worker.store.start(captions.id, "someone")
    worker._maybe_stop_pod()
    worker.store.finish(captions.id, "completed")
    worker._idle_since -= 61  # a minute after the captions, long before the ten minutes
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 4 and podstop.last_stop(worker.settings)["ok"]


def test_a_refusal_asking_again_cannot_help_is_not_asked_again(make_settings, receiver, monkeypatch):  # noqa: F811
    runpod = receiver(codes=[401, 401])
    worker = _idle_worker(make_settings, runpod, None, monkeypatch)
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 1 and podstop.last_stop(worker.settings)["lasting"]
    worker._pod_stop_again_at = None
    worker._idle_since -= 3600
    worker._maybe_stop_pod()
    assert len(_stops(runpod)) == 1
