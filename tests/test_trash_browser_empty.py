"""Recently deleted in a real browser: the dialog says when each batch is removed for good, emptying asks with the
count and size of what it removes and removes only that (a delete made meanwhile in another tab stays), the toast
says the bytes freed, and a batch another tab restored first puts the gallery right instead of a bare error."""

from __future__ import annotations

import io

import requests

from tests.browser_studio import ARGS, CHROMIUM, browser_marks, watch_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


def _delete(url: str, dataset_id: str, names: list[str]) -> str:
    answer = requests.post(f"{url}/api/datasets/{dataset_id}/images/delete", json={"names": names}, timeout=10)
    answer.raise_for_status()
    return answer.json()["trash"]


def test_emptying_in_the_browser_removes_what_the_dialog_showed(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with ServerProcess("app", {"STUDIO_ROOT": str(studio_root)}, log_path=tmp_path / "server.log") as server, \
            sync_playwright() as p:
        made = requests.post(f"{server.url}/api/datasets", json={"name": "Trash Set"}, timeout=10).json()
        files = [("files", (f"p{i}.png", io.BytesIO(image_bytes(i)), "image/png")) for i in range(4)]
        requests.post(f"{server.url}/api/datasets/{made['id']}/upload?wait=20", files=files,
                      timeout=30).raise_for_status()
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        problems = watch_page(page)
        page.set_default_timeout(20_000)
        page.goto(f"{server.url}/d/{made['id']}")
        expect(page.locator(".tile")).to_have_count(4)

        _delete(server.url, made["id"], ["p0.png"])
        page.reload()
        expect(page.locator(".tile")).to_have_count(3)
        page.click("#btn-trash")
        expect(page.locator("#trash-list")).to_contain_text("removed for good")
        later = _delete(server.url, made["id"], ["p1.png"])  # another tab, while this one's dialog is open
        page.click("#trash-empty")
        expect(page.locator("#confirm-text")).to_contain_text("1 image and their captions (")
        expect(page.locator("#confirm-text")).to_contain_text("cannot be restored")
        page.click("#confirm-ok")
        expect(page.locator(".toast", has_text="Removed 1 image for good;")).to_contain_text("freed")
        expect(page.locator("#btn-trash")).to_have_text("Recently deleted (1)")  # p1.png, deleted since, stays
        expect(page.locator("#trash-list")).to_contain_text("p1.png")

        requests.post(f"{server.url}/api/datasets/{made['id']}/trash/{later}/restore", timeout=10).raise_for_status()
        page.click("#trash-list button[data-restore]")  # restored first in the other tab
        expect(page.locator(".toast-error")).to_contain_text("restored, emptied")
        expect(page.locator(".tile")).to_have_count(3)  # p1.png shows again without a reload
        expect(page.locator("#btn-trash")).to_be_hidden()
        browser.close()
        assert [p for p in problems if "/trash/" not in p] == []  # the 404s of the batch restored elsewhere
