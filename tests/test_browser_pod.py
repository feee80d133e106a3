"""The dashboard's pod box in a real browser against a real trainer: an hour with nothing to do says so with what
it cost, "Stop the pod when the queue is done" is kept, and Stop the pod (after its question) asks RunPod to stop
this pod (a local server stands in for RunPod)."""

from __future__ import annotations

import time

import requests

from studio.jobs import JobStore
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_pod_price import runpod  # noqa: F401 - the RunPod stand-in, a fixture

pytestmark = browser_marks


def idle_pod(studio_root, stand_in, idle_s: float) -> tuple[dict, JobStore, object]:
    """A pod on RunPod (`stand_in` answers for it) whose last job ended `idle_s` ago: (the trainer's environment,
    the job store, that job)."""
    store = JobStore(studio_root / "studio.db")
    job, _ = store.create("train", name="cats", dataset="d", total=1)
    store.finish(job.id, "failed", error="a test job")
    with store.write() as conn:
        conn.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (time.time() - idle_s, job.id))
    return {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
            "RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": "rp-key", "RUNPOD_API_URL": stand_in.url}, store, job


def test_an_idle_hour_shows_its_cost_and_stop_the_pod_stops_it(studio_root, artifacts_dir, tmp_path,
                                                                runpod):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    env, store, job = idle_pod(studio_root, runpod, 3600)
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as server, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(server.url + "/")
        box = page.locator("#pod-idle")
        expect(box).to_contain_text("The GPU has had nothing to do for 1h")
        expect(box).to_contain_text("(≈ $2.49 at $2.49/h)", timeout=15_000)  # once RunPod told the price
        expect(page.locator("#auto-stop")).not_to_be_checked()
        page.check("#auto-stop")  # stop by itself once the queue is done, from now on
        expect(page.locator(".toast")).to_contain_text("stops by itself")
        assert requests.get(server.url + "/api/pod", timeout=10).json()["auto_stop"] is True
        page.screenshot(path=str(artifacts_dir / "trainer-pod-idle.png"))
        page.click("#stop-pod")
        expect(page.locator("#confirm-title")).to_have_text("Stop this pod now?")
        expect(page.locator("#confirm-text")).to_contain_text("Everything in /workspace stays")
        assert runpod.stops == []  # asked first
        page.click("#confirm-ok")
        expect(box).to_contain_text("The pod is stopping")
        assert runpod.stops == [("/v1/pods/pod123/stop", "Bearer rp-key")]

        # a job that waits offers the same choice on its page; a finished one does not (it would stop at once)
        waiting, _ = store.create("train", name="dogs", dataset="d", total=5)
        page.goto(f"{server.url}/jobs/{waiting.id}")
        expect(page.locator("#job-autostop")).to_be_visible()
        expect(page.locator("#job-autostop-box")).to_be_checked()  # chosen on the dashboard
        page.uncheck("#job-autostop-box")
        expect(page.locator(".toast")).to_contain_text("keeps running")
        assert requests.get(server.url + "/api/pod", timeout=10).json()["auto_stop"] is False
        page.goto(f"{server.url}/jobs/{job.id}")
        expect(page.locator("#job-status")).to_contain_text("failed")
        expect(page.locator("#job-autostop")).to_be_hidden()
        expect(page.locator("#error")).to_have_text("a test job")  # said once, in the red box
        expect(page.locator("#message")).to_be_hidden()
        assert problems == []
        browser.close()


def test_express_offers_to_stop_the_pod_when_its_lora_is_ready(studio_root, tmp_path, runpod):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
           "RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": "rp-key", "RUNPOD_API_URL": runpod.url}
    with ServerProcess("app", env, log_path=tmp_path / "app.log") as server, sync_playwright() as p:
        made = requests.post(f"{server.url}/api/express", json={"trigger_word": "zxcat", "kind": "object"},
                             timeout=10).json()
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/express/{made['express']['id']}")
        expect(page.locator("#x-autostop")).to_be_visible()
        page.check("#x-autostop-box")
        expect(page.locator(".toast")).to_contain_text("after your LoRA is ready")
        assert requests.get(f"{server.url}/api/express/pod", timeout=10).json()["auto_stop"] is True
        assert problems == []
        browser.close()


def test_the_running_card_says_what_the_job_has_cost_so_far(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from studio.processes import process_token

    store = JobStore(studio_root / "studio.db")
    job, _ = store.create("train", name="cats", dataset="d", total=100)
    store.start(job.id, process_token())  # this test's process holds it: the job counts as alive
    # it ran 12 minutes before a restart and started again about 12 minutes ago: both runs are paid for
    # ($1.00 at $2.50/h for the next 20 s or so)
    with store.write() as conn:
        conn.execute("UPDATE jobs SET started_at = ?, run_s = ? WHERE id = ?", (time.time() - 11.9 * 60, 12 * 60,
                                                                                 job.id))
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
           "GPU_PRICE_PER_HOUR": "2.5"}
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as server, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(server.url + "/")
        expect(page.locator(".running-card .now-cost")).to_have_text("≈ $1.00")
        expect(page.locator("#pod-idle")).to_be_hidden()  # a job runs: nothing idle to say
        # its page: Elapsed and the ETA tick every second between reports (previews can take a minute without one)
        store.progress(job.id, {"eta_s": 600.0})
        page.goto(f"{server.url}/jobs/{job.id}")
        expect(page.locator("#s-elapsed")).to_contain_text("23m")
        first = (page.locator("#s-elapsed").inner_text(), page.locator("#s-eta").inner_text())
        page.wait_for_timeout(2500)
        later = (page.locator("#s-elapsed").inner_text(), page.locator("#s-eta").inner_text())
        assert later[0] != first[0] and later[1] != first[1] and later[1].startswith("9m"), (first, later)
        assert problems == []
        browser.close()
