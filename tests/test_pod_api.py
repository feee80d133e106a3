"""The dashboard's pod box: how long the GPU has had nothing to do and what that cost, and Stop the pod, which
asks RunPod to stop it only when nothing is queued or running and the last LoRA is whole on disk (a local HTTP
server stands in for RunPod)."""

from __future__ import annotations

import time

import trainer as trainer_app
from studio.jobs import JobStore
from tests.test_pod_price import _on_runpod, runpod  # noqa: F401 - the RunPod stand-in, a fixture


def _client(settings):
    return trainer_app.create_app(settings).test_client()


def test_away_from_runpod_the_box_says_how_long_and_stop_is_refused_with_a_sentence(make_settings, studio_root):
    client = _client(make_settings(GPU_PRICE_PER_HOUR="3.0"))
    store = JobStore(studio_root / "studio.db")
    job, _ = store.create("train", name="done", dataset="d", total=1)
    store.finish(job.id, "completed")
    with store.write() as conn:  # it ended an hour ago
        conn.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (time.time() - 3600, job.id))
    state = client.get("/api/pod").get_json()
    assert state["busy"] == 0 and 3590 < state["idle_s"] < 3700
    assert state["price"] == {"per_hour": 3.0, "source": "setting"}
    assert not state["can_stop"] and "not a RunPod pod" in state["why_not"]
    refused = client.post("/api/pod/stop")
    assert refused.status_code == 409 and "not a RunPod pod" in refused.get_json()["error"]


def test_on_runpod_stop_waits_for_the_jobs_then_asks_runpod(make_settings, studio_root, runpod):  # noqa: F811
    client = _client(_on_runpod(make_settings, runpod))
    store = JobStore(studio_root / "studio.db")
    job, _ = store.create("caption", name="captions", dataset="d", total=3)  # any kind of job keeps the GPU busy
    state = client.get("/api/pod").get_json()
    assert state["busy"] == 1 and state["idle_since"] is None and not state["can_stop"]
    refused = client.post("/api/pod/stop")
    assert refused.status_code == 409 and "A job is queued or running" in refused.get_json()["error"]
    assert runpod.stops == []
    store.finish(job.id, "completed")
    waiting, _ = store.create("express", name="left", dataset="d", total=4)  # an Express run waiting for its files
    store.start(waiting.id, None)
    store.progress(waiting.id, {"phase": "upload"})
    assert client.get("/api/pod").get_json()["busy"] == 0  # is no work: a closed tab must not keep the pod running

    lora = studio_root / "half.safetensors"
    lora.write_bytes(b"\x10\x00")  # a LoRA cut short: its header says more than the file holds
    trained, _ = store.create("train", name="lora", dataset="d", total=1)
    store.finish(trained.id, "completed", lora_path=str(lora))
    blocked = client.post("/api/pod/stop")
    assert blocked.status_code == 409 and "not complete on disk" in blocked.get_json()["error"]

    lora.write_bytes((2).to_bytes(8, "little") + b"{}" + b"\0" * 64)  # whole
    assert client.get("/api/pod").get_json()["can_stop"]
    stopped = client.post("/api/pod/stop")
    assert stopped.status_code == 202 and stopped.get_json() == {"stopping": True}
    assert runpod.stops == [("/v1/pods/pod123/stop", "Bearer rp-key")]

    runpod.stop_code = 403
    failed = client.post("/api/pod/stop")
    assert failed.status_code == 502 and "RunPod's console" in failed.get_json()["error"]


def test_the_pod_routes_need_the_password(make_settings):
    client = _client(make_settings(STUDIO_PASSWORD="secret"))
    assert client.get("/api/pod").status_code == 401
    assert client.post("/api/pod/stop").status_code == 401


def test_stop_when_the_queue_is_done_is_chosen_on_the_dashboard_and_kept(make_settings, studio_root,
                                                                          runpod):  # noqa: F811
    from trainer import podstop

    settings = _on_runpod(make_settings, runpod)
    client = _client(settings)
    assert client.get("/api/pod").get_json()["auto_stop"] is False  # STOP_POD_WHEN_IDLE's default
    assert client.put("/api/pod/auto-stop", json={"on": True}).get_json() == {"on_runpod": True, "auto_stop": True}
    assert podstop.stop_when_idle(settings) and podstop.pod_stop_configured(settings) is None
    assert _client(settings).get("/api/pod").get_json()["auto_stop"] is True  # kept in the workspace
    assert client.put("/api/pod/auto-stop", json={"on": "yes"}).status_code == 422
    off = _client(_on_runpod(make_settings, runpod, STOP_POD_WHEN_IDLE="1"))
    assert off.put("/api/pod/auto-stop", json={"on": False}).get_json()["auto_stop"] is False  # wins the setting
    elsewhere = _client(make_settings())
    refused = elsewhere.put("/api/pod/auto-stop", json={"on": True})
    assert refused.status_code == 409 and "not a RunPod pod" in refused.get_json()["error"]
    assert elsewhere.get("/api/pod").get_json()["on_runpod"] is False


def test_express_sets_the_same_choice_from_its_own_page(make_settings, studio_root, runpod):  # noqa: F811
    import app as datasets_app
    from trainer import podstop

    settings = _on_runpod(make_settings, runpod)
    client = datasets_app.create_app(settings).test_client()
    assert client.get("/api/express/pod").get_json() == {"on_runpod": True, "auto_stop": False}
    assert client.put("/api/express/pod", json={"on": True}).get_json() == {"on_runpod": True, "auto_stop": True}
    assert podstop.stop_when_idle(settings)  # what the worker reads
    assert _client(settings).get("/api/pod").get_json()["auto_stop"] is True  # and the dashboard shows
    elsewhere = datasets_app.create_app(make_settings()).test_client()
    assert elsewhere.get("/api/express/pod").get_json()["on_runpod"] is False
    assert elsewhere.put("/api/express/pod", json={"on": True}).status_code == 409
    locked = datasets_app.create_app(make_settings(STUDIO_PASSWORD="secret")).test_client()
    assert locked.get("/api/express/pod").status_code == 401 and locked.put("/api/express/pod").status_code == 401
