"""A delete's Undo clicked twice (a double click, or a second click while the first is on its way) puts the batch
back once and says so once: the second click did not add "Undo failed: there is no deleted batch" under "Restored"."""

from __future__ import annotations

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


def test_a_double_clicked_undo_restores_once_without_an_error(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Undo"}, timeout=10).json()["id"]
        requests.post(f"{server.url}/api/datasets/{dataset_id}/upload?wait=20", timeout=60,
                      files=[("files", (f"i{i}.png", image_bytes(i), "image/png")) for i in range(3)]
                      ).raise_for_status()
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.locator('.tile[data-name="i1.png"]').click()
        page.click("#ed-delete")
        page.click("#confirm-ok")
        expect(page.locator(".tile")).to_have_count(2)
        page.keyboard.press("Escape")
        page.locator(".toast-action", has_text="Undo").dblclick()
        expect(page.locator(".tile")).to_have_count(3)
        expect(page.locator(".toast", has_text="Restored 1 image.")).to_be_visible()
        page.wait_for_timeout(700)  # the second click's answer would have come by now
        expect(page.locator(".toast-error")).to_have_count(0)
        assert problems == []
        browser.close()
