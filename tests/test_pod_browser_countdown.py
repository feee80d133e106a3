"""The dashboard in a real browser counts down the minute before the pod stops by itself (the worker does it once
the queue is done), beside "Stop the pod when the queue is done": unticking it hides the countdown and keeps the pod
running. A local server stands in for RunPod."""

from __future__ import annotations

import os

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_pod_price import runpod  # noqa: F401 - the RunPod stand-in, a fixture
from tests.test_pod_stop_countdown import _trained

pytestmark = browser_marks


def test_the_dashboard_counts_down_and_unticking_keeps_the_pod(studio_root, tmp_path, runpod,  # noqa: F811
                                                                monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("RUNPOD_POD_ID", "pod123")  # the worker beating below runs on the same pod as the web server

    store = _trained(studio_root, ended_ago=20)
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
           "RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": "rp-key", "RUNPOD_API_URL": runpod.url}
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as server, \
            sync_playwright() as p:
        store.worker_beat(os.getpid(), "idle")  # fresh
        browser, page, problems = open_page(p)
        page.goto(server.url + "/")
        note = page.locator("#auto-stop-row + .pod-stop-countdown")
        expect(note).to_be_hidden()
        page.check("#auto-stop")
        expect(note).to_contain_text("The pod stops in ")
        expect(note).to_contain_text("untick to keep it running")
        first = int(note.inner_text().split("stops in ")[1].split(" s")[0])
        assert 20 <= first <= 40
        page.wait_for_timeout(2200)
        assert int(note.inner_text().split("stops in ")[1].split(" s")[0]) < first  # it ticks
        page.uncheck("#auto-stop")
        expect(note).to_be_hidden()
        assert requests.get(server.url + "/api/pod", timeout=10).json()["auto_stop"] is False
        assert problems == []
        browser.close()
