"""The express page while a stop is on its way and after a stage that could not start.

A stop is taken at the stage's next safe point: training on 200 images can spend minutes encoding them before it
looks, so until then the page says the stop was asked for (the stage reads "stopping", Stop reads "Stopping…" and
cannot be pressed twice) instead of the training step it was at. A stage that could not start at all (the caption
service down, the trainer refusing the config) has no job of its own: its card says it failed, with why, instead of
"waiting" beside a run that failed; the reason is said once ("Captioning cannot start: ..."). Files without a single
usable image offer new files, not a Retry that would find none again."""

from __future__ import annotations

import contextlib
import io
import os

from studio.jobs import JobStore
from tests.browser_studio import ARGS, CHROMIUM, browser_marks
from tests.test_datasets_support import image_bytes
from tests.test_express import _create, _drive, _upload_session, stand_in, studio  # noqa: F401 - fixtures
from tests.test_express_worker_and_refusals import _run_with_images
from tests.test_express_worker_and_refusals_browser import _page, served  # noqa: F401 - a fixture


def _in_browser(test):
    for mark in browser_marks:
        test = mark(test)
    return test


def _training(studio):  # noqa: F811
    """A run whose training job runs (claimed by this process, standing in for the worker), and its store."""
    settings, app, client, express_id = _run_with_images(studio)
    store = JobStore(settings.root / "studio.db")
    store.worker_beat(os.getpid(), "idle")
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train" and r["stages"][3]["status"] == "queued")
    assert store.claim("train", f"{os.getpid()}:1").id == run["stages"][3]["job_id"]
    return app, client, express_id, store


@contextlib.contextmanager
def _express_page(url: str, express_id: str):
    """The run's page in chromium; yields (page, the page's errors), closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        errors: list[str] = []
        page = _page(browser, errors)
        page.goto(f"{url}/express/{express_id}")
        try:
            yield page, errors
        finally:
            browser.close()


@_in_browser
def test_a_stop_not_taken_yet_is_said_and_cannot_be_pressed_twice(studio, served):  # noqa: F811
    from playwright.sync_api import expect

    app, client, express_id, store = _training(studio)
    url = served(app)
    with _express_page(url, express_id) as (page, errors):
        train = page.locator(".x-stage[data-stage=train]")
        expect(train.locator(".state")).to_have_text("running", timeout=30_000)
        page.click("#x-stop")
        # the training job has not looked yet (it still says its own step): the page says the stop is coming
        expect(page.locator("#x-stop")).to_have_text("Stopping…")
        expect(page.locator("#x-stop")).to_be_disabled()
        expect(train.locator(".state")).to_have_text("stopping")
        expect(train.locator(".x-stopping")).to_contain_text("next safe point")
        expect(page.locator("#x-message")).to_contain_text("Stopping: it ends at its next safe point")
        page.reload()  # and so does a page opened meanwhile
        expect(page.locator("#x-stop")).to_be_disabled()
        expect(train.locator(".state")).to_have_text("stopping")
        # the training job takes the stop: Retry, and no Stop
        train_id = client.get(f"/api/express/{express_id}").get_json()["stages"][3]["job_id"]
        store.finish(train_id, "stopped", resumable=True, message="Stopped at step 0 because you asked.")
        expect(page.locator("#x-retry")).to_be_visible(timeout=30_000)
        expect(page.locator("#x-stop")).to_be_hidden()
        assert not errors, errors


def test_a_stage_that_could_not_start_says_it_failed_and_why_once(studio, stand_in):  # noqa: F811
    stand_in.status = "error"  # the caption service is down
    settings, app, client, express_id = _run_with_images(studio)
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    error = run["express"]["error"]
    assert run["express"]["status"] == "failed" and run["express"]["phase"] == "caption"
    assert error.startswith("Captioning cannot start: ") and "Auto-caption cannot start" not in error, error
    caption = run["stages"][1]
    assert caption["stage"] == "caption" and caption["status"] == "failed" and caption["error"] == error
    assert [s["status"] for s in run["stages"][2:]] == ["waiting", "waiting"]
    stand_in.status = "ready"  # Retry: the stage starts, and its card follows its job again
    client.post(f"/api/express/{express_id}/retry")
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["stages"][1]["status"] == "completed"


@_in_browser
def test_files_without_a_usable_image_offer_new_files_not_a_retry_that_finds_none(studio, served):  # noqa: F811
    from playwright.sync_api import expect

    settings, app = studio()
    client = app.test_client()
    made = _create(client)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    session = _upload_session(client, dataset_id, "notes.txt", b"not an image")
    client.post(f"/api/express/{express_id}/start", json={"sessions": [session]})
    _drive(app, express_id, lambda r: r["express"]["status"] == "failed")
    url = served(app)
    with _express_page(url, express_id) as (page, errors):
        expect(page.locator("#x-message")).to_contain_text("No usable images were found", timeout=30_000)
        expect(page.locator("#x-go")).to_have_text("Upload and go on")
        expect(page.locator("#x-retry")).to_be_hidden()
        # an image added to its dataset meanwhile (on the Datasets page): Retry goes on with it
        client.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                    data={"files": [(io.BytesIO(image_bytes(7)), "good.png")]}, content_type="multipart/form-data")
        page.reload()
        expect(page.locator("#x-retry")).to_be_visible(timeout=30_000)
        assert not errors, errors
