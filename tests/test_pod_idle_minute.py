"""The pod's idle stop counts its minute from the end of the last work, and still stops after work queued while
RunPod was asked again."""

from __future__ import annotations

import time

from tests.test_trainer_worker import _job, _worker, receiver  # noqa: F401 - a fixture
from trainer import podstop


# -- the pod's idle stop -------------------------------------------------------------------------------
def _on_runpod(make_settings, runpod):
    return make_settings(STOP_POD_WHEN_IDLE=1, RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key",
                         RUNPOD_API_URL=runpod.url + "/v1")


def test_the_minute_counts_from_the_end_of_work_that_ended_inside_the_first_minute(make_settings, receiver):  # noqa: F811
    """Captions started 30 s after the last training job and ran a little: the pod must not stop 30 s after they
    ended because the first minute, counted from the training job, had passed."""
    runpod = receiver()
    worker = _worker(_on_runpod(make_settings, runpod), pod_stop_grace_s=60)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    captions, _ = worker.store.create("caption", name="captions", dataset="d", total=40)
    worker.store.start(captions.id, "someone")
    worker._idle_since = time.monotonic() - 30  # the training job ended 30 s ago; the captions run now
    worker._maybe_stop_pod()
    worker.store.finish(captions.id, "completed")  # and end now
    worker._idle_since -= 31  # 31 s later
    worker._maybe_stop_pod()
    assert runpod.requests == []  # 31 s after the last work: not yet
    worker._idle_since -= 30
    worker._maybe_stop_pod()
    (call,) = runpod.wait(1)
    assert call["path"] == "/v1/pods/pod123/stop"


def test_work_queued_while_runpod_was_asked_again_is_followed_by_the_stop(make_settings, receiver,  # noqa: F811
                                                                          monkeypatch):
    """A stop called off because work came meanwhile (podstop: a pod is never stopped under work) is made once that
    work is done, instead of never: the pod would bill all night."""
    runpod = receiver()
    worker = _worker(_on_runpod(make_settings, runpod), pod_stop_grace_s=60)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    came = []
    real_stop = podstop.stop_pod

    def work_comes(settings, **kw):  # RunPod could not answer; captions are queued while it is asked again
        job, _ = worker.store.create("caption", name="captions", dataset="d", total=4)
        came.append(job)
        return False

    monkeypatch.setattr(podstop, "stop_pod", work_comes)
    worker._idle_since = time.monotonic() - 61
    worker._maybe_stop_pod()
    assert len(came) == 1
    monkeypatch.setattr(podstop, "stop_pod", real_stop)
    worker.store.start(came[0].id, "someone")
    worker._maybe_stop_pod()
    worker.store.finish(came[0].id, "completed")
    worker._maybe_stop_pod()
    assert runpod.requests == []  # the minute after the captions
    worker._idle_since -= 61
    worker._maybe_stop_pod()
    (call,) = runpod.wait(1)
    assert call["path"] == "/v1/pods/pod123/stop"
