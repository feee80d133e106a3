"""The job page in chromium, where what it showed went stale or empty:

- a job deleted while the page followed it by polling (a proxy that breaks the event stream, or a stream that was
  down when the job went) stayed on screen as it was, for good: the polls were answered 404 and nobody said so;
- one NaN evaluation (a diverging run) in eval.jsonl made every read of the metrics fail: the loss chart stayed empty;
- a completed job trained further showed no LoRA to download while it trained, nor after that run was cut short.
"""

from __future__ import annotations

import json

import requests

from tests.browser_studio import BEARER, browser_marks, login, open_page, studio  # noqa: F401 - the fixture

pytestmark = browser_marks


def _new_job(studio, name: str) -> str:  # noqa: F811 - the fixture's name
    return studio.api(studio.trainer, "/api/jobs", {"name": name, "dataset": "my-cat",
                                                    "config": {"name": name, "steps": 10}})["job"]["id"]


def test_a_job_deleted_while_the_page_polls_goes_to_the_dashboard(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    job_id = _new_job(studio, "soon-gone")
    with sync_playwright() as p:
        browser, page, _ = open_page(p)
        login(page, studio.trainer)
        page.route("**/events", lambda route: route.abort())  # the stream cannot get through: the page polls
        page.goto(f"{studio.trainer}/jobs/{job_id}")
        page.wait_for_function("document.querySelector('#job-status [data-status]') !== null")
        deleted = requests.delete(f"{studio.trainer}/api/jobs/{job_id}", headers=BEARER, timeout=30)
        assert deleted.status_code == 200 and deleted.json()["deleted"]
        page.wait_for_selector(".toast:has-text('This job was deleted')", timeout=30_000)
        page.wait_for_url(f"{studio.trainer}/", timeout=10_000)
        browser.close()


def test_the_loss_chart_draws_past_a_nan_evaluation(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    job_id = _new_job(studio, "diverging")
    job_dir = studio.workspace.jobs / job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.5 - s / 100, "lr": 1e-4}) + "\n"
                                                   for s in (1, 2, 3)))
    (job_dir / "eval.jsonl").write_text(json.dumps({"step": 0, "eval_loss": 0.7}) + "\n"
                                        + json.dumps({"step": 2, "eval_loss": 0.6}) + "\n"
                                        + json.dumps({"step": 3, "eval_loss": float("nan")}) + "\n")
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.goto(f"{studio.trainer}/jobs/{job_id}")
        page.wait_for_function("document.getElementById('loss-chart').dataset.points === '3'")
        assert page.evaluate("document.getElementById('loss-chart').dataset.evals") == "2"  # the NaN one is left out
        assert page.locator("#s-eval-box").is_visible()
        assert problems == []
        browser.close()


def test_the_finished_lora_stays_offered_after_training_further_was_cut_short(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    job_id = _new_job(studio, "further")
    store = studio.store()
    lora = studio.workspace.jobs / job_id / "lora" / "further.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    lora.write_bytes(b"the LoRA at step 10")
    store.finish(job_id, "completed", message="Finished 10 steps.", lora_path=str(lora),
                 result={"lora_path": str(lora), "steps": 10, "library_file": "further.safetensors"})
    store.resume(job_id, "10 more steps", also_completed=True)
    store.finish(job_id, "failed", error="The training process was killed (SIGKILL).")
    with sync_playwright() as p:
        browser, page, _ = open_page(p)
        login(page, studio.trainer)
        page.goto(f"{studio.trainer}/jobs/{job_id}")
        page.wait_for_selector("#download-lora")
        assert "as it finished at step 10, before training further" in page.inner_text("#lora-box")
        assert page.get_attribute("#download-lora", "download") == "further.safetensors"
        browser.close()
