"""The Export dialog's "Before you train" of a dataset with no image says there is nothing to export, not
"Ready to train: every image has a caption" (the export is then refused)."""

from __future__ import annotations

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess

pytestmark = browser_marks


def test_an_empty_dataset_is_not_ready_to_train(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        made = requests.post(f"{server.url}/api/datasets", json={"name": "Empty", "trigger_word": "zk"}, timeout=10)
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{made.json()['id']}")
        expect(page.locator("#ds-stats")).to_contain_text("0 images")
        page.click("#btn-export")
        expect(page.locator("#export-checks")).to_have_text("No images to export yet: upload some first.")
        expect(page.locator("#export-checks")).not_to_contain_text("Ready to train")
        page.click("#export-start")
        expect(page.locator("#export-error")).to_have_text("This dataset has no images to export.")
        assert problems == []
        browser.close()
