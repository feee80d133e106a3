"""Browser tests of the express page when training cannot go on or captions are missing: with no training worker the
page says so, in words, with what to do, and goes back to the queue's state once a worker reports in; images the
caption service refused are named with why, and the page offers to caption them again or to train anyway.

The dataset manager runs in this process (its express driver too) behind a real HTTP server, with the caption
service's stand-in (tests/test_datasets_autocaption.py); the worker is only a beat in the job store."""

from __future__ import annotations

import os
import threading

import pytest
from werkzeug.serving import make_server

from studio.jobs import JobStore
from tests.browser_studio import ARGS, CHROMIUM, browser_marks
from tests.helpers import free_port
from tests.test_express import stand_in, studio  # noqa: F401 - fixtures
from tests.test_express_worker_and_refusals import _run_with_images

pytestmark = browser_marks


@pytest.fixture
def served():
    servers = []

    def serve(app) -> str:
        server = make_server("127.0.0.1", free_port(), app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _page(browser, errors: list):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    return page


def test_the_page_says_no_worker_runs_and_recovers_when_one_does(studio, served):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    settings, app, client, express_id = _run_with_images(studio)
    store = JobStore(settings.root / "studio.db")
    url = served(app)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        errors: list[str] = []
        page = _page(browser, errors)
        page.goto(f"{url}/express/{express_id}")
        train = page.locator(".x-stage[data-stage=train]")
        expect(page.locator("#x-message")).to_contain_text("the training worker is not running", timeout=60_000)
        expect(page.locator("#x-message")).to_contain_text("python -m trainer.worker")
        expect(train.locator(".state")).to_have_text("no worker")
        expect(train.locator(".x-no-worker")).to_contain_text("restart the studio")
        expect(train).to_have_class("x-stage queued stalled")
        store.worker_beat(os.getpid(), "idle")  # a worker reports in
        expect(train.locator(".state")).to_have_text("queued", timeout=15_000)
        expect(train.locator(".x-no-worker")).to_have_count(0)
        expect(page.locator("#x-message")).not_to_contain_text("worker is not running")
        assert not errors, errors
        browser.close()


def test_refused_captions_are_said_with_why_and_training_anyway_goes_on(studio, stand_in, served):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    stand_in.fail_widths = {97, 99}
    settings, app, client, express_id = _run_with_images(studio)
    JobStore(settings.root / "studio.db").worker_beat(os.getpid(), "idle")
    url = served(app)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        errors: list[str] = []
        page = _page(browser, errors)
        page.goto(f"{url}/express/{express_id}")
        box = page.locator("#x-uncaptioned")
        expect(box).to_contain_text("2 of 6 images train on the trigger word alone", timeout=60_000)
        expect(box).to_contain_text("bad image")
        expect(box).to_contain_text("cat1.png")
        expect(box).to_contain_text("training starts anyway in about")
        train = page.locator(".x-stage[data-stage=train]")
        expect(train).to_contain_text("2 of 6 images train on the trigger word alone")  # the training step says it
        expect(page.locator("#x-message")).to_contain_text("Caption them again, or train anyway")
        page.click("#x-train-anyway")
        expect(train.locator(".state")).to_have_text("queued", timeout=30_000)
        expect(page.locator("#x-train-anyway")).to_have_count(0)
        expect(train).to_contain_text("2 of 6 images train on the trigger word alone")
        expect(page.locator("#x-warnings")).to_contain_text("train on the trigger word alone, without a caption")
        assert not errors, errors
        browser.close()
