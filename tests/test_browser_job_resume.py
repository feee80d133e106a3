"""The job page of a run resumed from a checkpoint behind the step it had reached, in a real browser against a real
trainer: the loss chart drops the steps that train again and follows them anew, and the page says why its progress
went back."""

from __future__ import annotations

import json

from studio.jobs import JobStore
from studio.processes import process_token
from studio.workspace import Workspace
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess

pytestmark = browser_marks


def _metrics(job_dir, steps, loss):
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": loss, "smooth_loss": loss, "lr": 1e-4, "time": float(s)}) + "\n" for s in steps))


def test_the_chart_follows_the_steps_a_resumed_run_trains_again(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    space = Workspace(studio_root)
    space.ensure()
    store = JobStore(space.db_path)
    job, _ = store.create("train", name="cats", dataset="d", total=20)
    store.start(job.id, process_token())  # this test's process holds it: the job counts as alive
    _metrics(space.jobs / job.id, range(1, 9), 0.5)
    store.progress(job.id, {"done": 8, "phase": "training", "loss": 0.5})
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as server, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/jobs/{job.id}")
        expect(page.locator("#loss-chart")).to_have_attribute("data-points", "8")
        # the worker died at step 8; the run goes on from the checkpoint at step 4 and trains step 5 again
        said = "Resumed from the checkpoint at step 4: the run had reached step 8 when it ended, so steps 5-8 are " \
               "trained again."
        _metrics(space.jobs / job.id, range(1, 6), 0.25)
        store.progress(job.id, {"done": 5, "phase": "training", "notices": [said]})
        expect(page.locator("#loss-chart")).to_have_attribute("data-points", "5")
        expect(page.locator("#notices")).to_contain_text(said)
        expect(page.locator("#step-text")).to_have_text("step 5 / 20")
        assert problems == []
        browser.close()
