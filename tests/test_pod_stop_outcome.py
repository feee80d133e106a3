"""A pod that stops by itself once the queue is done: a refused stop is kept, shown by GET /api/pod and told to the
chat (the pod goes on billing otherwise, unseen, all night); RunPod's answer and key never reach the log; no stop while
a file is still being uploaded in chunks. A local server stands in for RunPod, another for Discord."""

from __future__ import annotations

import json
import logging
import os
import time

import trainer as trainer_app
from studio import chunked
from studio.workspace import Workspace
from tests.test_pod_price import _on_runpod, runpod  # noqa: F401 - the RunPod stand-in, a fixture
from tests.test_trainer_worker import _job, _worker, receiver  # noqa: F401 - a webhook receiver, a fixture
from trainer import podstop
from trainer.pod_notices import pod_message


def test_a_refused_stop_is_kept_shown_and_told_to_the_chat(make_settings, runpod, receiver, caplog):  # noqa: F811
    hook = receiver()
    settings = _on_runpod(make_settings, runpod, WEBHOOK_URL=f"{hook.url}/api/webhooks/42/chat-token")
    runpod.stop_code = 401  # a key without the right to stop pods: asking again cannot help
    with caplog.at_level(logging.INFO):
        assert podstop.stop_pod(settings, retry_delays_s=(0.01, 0.01)) is False
    assert len(runpod.stops) == 1
    last = podstop.last_stop(settings)
    assert last["ok"] is False and last["by"] == "auto" and last["error"].startswith("RunPod answered HTTP 401")
    (told,) = hook.wait(1)
    text = json.loads(told["body"])["content"]
    assert text.startswith("⚠ Pod pod123 did not stop by itself: RunPod answered HTTP 401")
    assert "still running and billing" in text and "https://pod123-8675.proxy.runpod.net/" in text
    assert "rp-key" not in caplog.text and "chat-token" not in caplog.text

    state = trainer_app.create_app(settings).test_client().get("/api/pod").get_json()
    assert state["last_stop"] == last and state["can_stop"]  # the dashboard says it, and offers the button


def test_runpod_out_of_reach_is_asked_again_and_a_stop_is_news(make_settings, runpod, receiver):  # noqa: F811
    hook = receiver()
    settings = _on_runpod(make_settings, runpod, WEBHOOK_URL=f"{hook.url}/hooks/studio")
    runpod.stop_code = 503
    assert podstop.stop_pod(settings, retry_delays_s=(0.01, 0.01)) is False
    assert len(runpod.stops) == 3 and "HTTP 503" in podstop.last_stop(settings)["error"]
    runpod.stop_code = 200
    assert podstop.stop_pod(settings, retry_delays_s=(0.01,))
    assert podstop.last_stop(settings)["ok"] is True
    news = [json.loads(item["body"]) for item in hook.wait(2)]
    assert [item["event"] for item in news] == ["pod.stop_failed", "pod.stopping"]  # the studio's JSON elsewhere
    assert news[1]["pod"] == {"id": "pod123", "stopping": True, "error": None}
    assert news[1]["message"] == pod_message(settings, None)


def test_the_button_asks_once_and_says_why_runpod_refused(make_settings, studio_root, runpod):  # noqa: F811
    client = trainer_app.create_app(_on_runpod(make_settings, runpod)).test_client()
    runpod.stop_code = 500
    failed = client.post("/api/pod/stop")
    assert failed.status_code == 502 and len(runpod.stops) == 1  # someone is at the page: no waiting on retries
    assert failed.get_json()["error"].startswith("The pod did not stop: RunPod answered HTTP 500.")
    assert client.get("/api/pod").get_json()["last_stop"]["by"] == "button"


def test_no_stop_while_a_file_is_still_being_uploaded(make_settings, studio_root, runpod):  # noqa: F811
    settings = _on_runpod(make_settings, runpod)
    podstop.choose_stop_when_idle(settings, True)
    worker = _worker(settings, pod_stop_grace_s=0)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    uploads = Workspace(studio_root).uploads
    session = chunked.create(uploads, {"dataset": "cats"}, "cats.zip", 10 << 20, 4 << 20)  # 10 MB in 4 MB parts
    worker._maybe_stop_pod()
    assert runpod.stops == []  # its first part has just come: the queue is done, but the upload is not
    client = trainer_app.create_app(settings).test_client()
    refused = client.post("/api/pod/stop")
    assert refused.status_code == 409 and "still being uploaded" in refused.get_json()["error"]

    folder = uploads / f"session-{session['id']}"
    long_ago = time.time() - podstop.UPLOAD_QUIET_S - 60  # left half-sent: a closed tab
    for path in (folder / "session.json", folder / "chunks"):
        os.utime(path, (long_ago, long_ago))
    worker._maybe_stop_pod()
    assert [path for path, _ in runpod.stops] == ["/v1/pods/pod123/stop"]
    assert podstop.last_stop(settings)["ok"]



def test_work_queued_meanwhile_calls_the_stop_off(make_settings, studio_root, runpod, monkeypatch):  # noqa: F811
    from studio.jobs import JobStore

    settings = _on_runpod(make_settings, runpod)
    runpod.stop_code = 503
    store = JobStore(Workspace(studio_root).db_path)
    monkeypatch.setattr(podstop.time, "sleep", lambda _s: store.create("train", name="queued meanwhile", dataset="d",
                                                                        total=3))
    assert podstop.stop_pod(settings) is False
    assert len(runpod.stops) == 1 and podstop.last_stop(settings) is None  # no second try, and no failure to tell
