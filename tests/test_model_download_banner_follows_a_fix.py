"""A page opened while a model download has failed for good keeps asking, now and then: once models.txt is fixed
and the fetcher started again, the banner shows the download, then leaves, without a reload."""

from __future__ import annotations

import os
import time

from studio.atomic import atomic_write_json
from studio.workspace import Workspace
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess

pytestmark = browser_marks


def _status(root, model: dict, state: str, **extra):
    atomic_write_json(Workspace(root).model_status_file, {
        "state": state, "demo": False, "pid": os.getpid(), "updated_at": time.time(), "models": [model], **extra})


def test_the_failure_banner_follows_the_fixed_download(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _status(studio_root, {"key": "zimage", "name": "Z-Image-Turbo", "state": "error", "percent": 0.0,
                          "error": "org/typo was not found on the hub (models.txt line 2)."}, "error")
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "app.log") as server, sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(server.url + "/")
        expect(page.locator("#models-error")).to_contain_text("org/typo was not found")

        _status(studio_root, {"key": "zimage", "name": "Z-Image-Turbo", "state": "downloading", "percent": 12.0,
                              "bytes_done": 12, "bytes_total": 100}, "downloading")  # fixed and started again
        expect(page.locator("#models")).to_have_text("Downloading models: Z-Image-Turbo 12%", timeout=25_000)
        expect(page.locator("#models-error")).to_have_count(0)

        _status(studio_root, {"key": "zimage", "name": "Z-Image-Turbo", "state": "ready", "percent": 100.0}, "ready")
        expect(page.locator("#models, #models-retry, #models-error")).to_have_count(0, timeout=15_000)
        assert problems == []
        browser.close()
