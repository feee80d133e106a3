"""An upload on its way can be cancelled: the request in flight is cut, nothing more is sent, nothing is imported,
and what the pod had received (a finished file, a part of one) is deleted from it. Leaving the page meanwhile asks
first."""

from __future__ import annotations

import requests

from studio.workspace import Workspace
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


def test_cancel_cuts_the_upload_imports_nothing_and_leaves_nothing_on_the_pod(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    paths = []
    for i, name in enumerate(["first.png", "second.png"]):
        (tmp_path / name).write_bytes(image_bytes(i, size=(96, 96)))
        paths.append(str(tmp_path / name))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Cancelled"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        passed, held = [], []

        def chunks(route):  # the first file's piece goes through; the second's hangs, as on a slow connection
            (held if passed else passed).append(route)
            if len(passed) == 1 and not held:
                route.continue_()

        page.route("**/uploads/*/chunks/*", chunks)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", paths)
        cancel = page.locator("#upload-cancel")
        expect(cancel).to_be_visible()
        expect(page.locator(".upload-row", has_text="uploaded")).to_have_count(1, timeout=15_000)
        assert len(held) == 1
        # leaving now would end the upload: the page asks first
        asked = page.evaluate("""() => { const ev = new Event('beforeunload', { cancelable: true });
                                         window.dispatchEvent(ev); return ev.defaultPrevented; }""")
        assert asked is True
        cancel.click()
        expect(page.locator("#uploads-title")).to_have_text("Upload cancelled")
        expect(page.locator("#import-status")).to_contain_text("nothing was imported")
        expect(page.locator(".upload-row.failed", has_text="cancelled")).to_have_count(1)
        expect(cancel).to_have_count(0)
        uploads = Workspace(studio_root).uploads
        assert list(uploads.glob("session-*")) == [], "what was sent stays on the pod"
        images = requests.get(f"{server.url}/api/datasets/{dataset_id}/images", timeout=10).json()["images"]
        assert images == []
        asked = page.evaluate("""() => { const ev = new Event('beforeunload', { cancelable: true });
                                         window.dispatchEvent(ev); return ev.defaultPrevented; }""")
        assert asked is False  # nothing on its way any more: leaving is free
        assert problems == []
        browser.close()
