"""The same file dropped again while it is still going up gets an upload session of its own: sharing the first's
(the resume after a reload) made two imports of one session, the first deleting it under the second."""

from __future__ import annotations

import os
import re

import requests

from studio.workspace import Workspace
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess

pytestmark = browser_marks


def _first_upload_waits(held: list, sessions: list):
    """A route handler: the first upload's last piece waits in `held` (a slow connection) until the test lets it go;
    `sessions` lists the upload sessions pieces were sent to."""
    def chunks(route):
        sid = re.search(r"/uploads/([0-9a-f]+)/chunks/", route.request.url).group(1)
        if sid not in sessions:
            sessions.append(sid)
        if route.request.url.endswith("/chunks/2") and not held and len(sessions) == 1:
            held.append(route)
            return
        route.continue_()
    return chunks


def test_the_same_file_dropped_again_mid_upload_is_sent_in_a_session_of_its_own(studio_root, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    big = tmp_path / "noise.png"
    Image.frombytes("RGB", (1000, 1000), os.urandom(1000 * 1000 * 3)).save(big)  # ~3 MB: 3 chunks of 1 MB
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "UPLOAD_CHUNK_MB": "1"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Twice"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        held, sessions = [], []
        page.route("**/uploads/*/chunks/*", _first_upload_waits(held, sessions))
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", str(big))
        for _ in range(300):
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the first upload's last piece never came"
        page.set_input_files("#file-input", str(big))  # dropped again while the first is still on its way
        expect(page.locator(".upload-row", has_text="uploaded")).to_have_count(1, timeout=30_000)
        held[0].continue_()
        expect(page.locator(".upload-row", has_text="uploaded")).to_have_count(2, timeout=30_000)
        assert len(sessions) == 2, sessions  # each drop its own session
        uploads = Workspace(studio_root).uploads
        for _ in range(300):  # both imports end (an import that completes deletes its session)
            if not list(uploads.glob("session-*")):
                break
            page.wait_for_timeout(100)
        assert not list(uploads.glob("session-*"))
        expect(page.locator("#uploads-title")).to_have_text(re.compile("Import finished|Imported"), timeout=15_000)
        expect(page.locator("#import-status")).not_to_contain_text("Unknown or expired", timeout=10_000)
        expect(page.locator(".upload-row.failed")).to_have_count(0)
        assert problems == []
        browser.close()


def test_the_same_file_dropped_in_another_tab_mid_upload_is_sent_in_a_session_of_its_own(studio_root, tmp_path):
    """Two tabs of one browser share what they remember of unfinished uploads: the second tab took the first's
    session as one to resume while the first was still sending it, and both sent into it."""
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from tests.browser_studio import ARGS, CHROMIUM, watch_page

    big = tmp_path / "noise.png"
    Image.frombytes("RGB", (1000, 1000), os.urandom(1000 * 1000 * 3)).save(big)  # ~3 MB: 3 chunks of 1 MB
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "UPLOAD_CHUNK_MB": "1"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Tabs"}, timeout=10).json()["id"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context()
        held, sessions = [], []
        context.route("**/uploads/*/chunks/*", _first_upload_waits(held, sessions))
        first, second = context.new_page(), context.new_page()
        problems = [watch_page(first), watch_page(second)]
        first.goto(f"{server.url}/d/{dataset_id}")
        second.goto(f"{server.url}/d/{dataset_id}")
        first.set_input_files("#file-input", str(big))
        for _ in range(300):
            if held:
                break
            first.wait_for_timeout(50)
        assert held, "the first tab's last piece never came"
        second.set_input_files("#file-input", str(big))
        expect(second.locator(".upload-row", has_text="uploaded")).to_have_count(1, timeout=30_000)
        held[0].continue_()
        expect(first.locator(".upload-row", has_text="uploaded")).to_have_count(1, timeout=30_000)
        assert len(sessions) == 2, sessions  # each tab its own session
        expect(first.locator("#import-status")).not_to_contain_text("Unknown or expired", timeout=10_000)
        expect(second.locator("#import-status")).not_to_contain_text("Unknown or expired", timeout=10_000)
        assert problems == [[], []]
        browser.close()
