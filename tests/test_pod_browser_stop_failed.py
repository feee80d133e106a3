"""The dashboard in a real browser when the pod did not stop by itself (RunPod refused): it says so in red, with what
RunPod answered and that the pod is still billing, and Stop the pod tells why it failed again, then stops it once
RunPod accepts. A local server stands in for RunPod."""

from __future__ import annotations

import pytest

from studio.settings import load_settings
from tests.browser_studio import VIEWPORTS, assert_no_sideways_scroll, browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_browser_pod import idle_pod
from tests.test_pod_price import runpod  # noqa: F401 - the RunPod stand-in, a fixture
from trainer import podstop

pytestmark = browser_marks


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_refused_stop_is_said_in_red_until_the_pod_stops(studio_root, tmp_path, runpod, viewport):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    env, _, _ = idle_pod(studio_root, runpod, 1800)
    runpod.stop_code = 401
    assert not podstop.stop_pod(load_settings(env), retry_delays_s=())  # what the worker does once the queue is done
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as server, \
            sync_playwright() as p:
        browser, page, problems = open_page(p, viewport)
        page.goto(server.url + "/")
        news = page.locator("#pod-stop-news")
        expect(news).to_contain_text("The pod did not stop by itself (the queue was done)")
        expect(news).to_contain_text("RunPod answered HTTP 401")
        expect(news).to_contain_text("still running and billing ($2.49/h)", timeout=15_000)
        assert "rp-key" not in page.content()
        expect(page.locator("#stop-pod")).to_be_visible()
        assert_no_sideways_scroll(page)

        page.click("#stop-pod")  # RunPod still refuses: the toast and the box say so
        page.click("#confirm-ok")
        expect(page.locator(".toast")).to_contain_text("The pod did not stop: RunPod answered HTTP 401")
        expect(news).to_contain_text("The pod did not stop when asked")
        runpod.stop_code = 200
        page.click("#stop-pod")
        page.click("#confirm-ok")
        expect(page.locator("#pod-idle")).to_contain_text("The pod is stopping")
        assert [path for path, _ in runpod.stops] == ["/v1/pods/pod123/stop"] * 3
        page.reload()  # still up a moment later (RunPod takes a few seconds): the box says the stop was accepted
        expect(news).to_contain_text("RunPod was asked to stop this pod at")
        assert problems == [f"502 POST {server.url}/api/pod/stop"]  # the refused stop, and nothing else
        browser.close()
