"""The datasets index in a real browser against a real server, when the page no longer tells the whole story: Delete
says what it stops (an import from a slow link still on its way) and the count as it is now, and a dataset deleted
in another tab leaves the page at the first Rename or Delete instead of a dialog that cannot succeed."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

import requests

from tests.browser_studio import ARGS, CHROMIUM, browser_marks
from tests.helpers import ServerProcess, serving

pytestmark = browser_marks


class SlowZip(BaseHTTPRequestHandler):
    """A ZIP whose server sends its first bytes, then nothing until the test lets it go."""

    release = threading.Event()

    def do_GET(self):  # noqa: N802 - the standard library's name
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"PK\x03\x04" + b"\0" * 1000)
        self.wfile.flush()
        SlowZip.release.wait(60)

    def log_message(self, *args):
        return None


def test_delete_says_what_it_stops_and_a_dataset_gone_elsewhere_leaves_the_page(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "ALLOW_PRIVATE_URLS": "1"}
    with serving(SlowZip) as web, ServerProcess("app", env, log_path=tmp_path / "server.log") as server, \
            sync_playwright() as p:
        api = server.url + "/api/datasets"
        busy = requests.post(api, json={"name": "Busy set"}, timeout=10).json()["id"]
        other = requests.post(api, json={"name": "Other set"}, timeout=10).json()["id"]
        started = requests.post(f"{api}/{busy}/import-url", json={"url": f"{web}/set.zip"}, timeout=10)
        assert started.status_code == 202, started.text
        job_url = f"{api}/{busy}/imports/{started.json()['id']}"
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(20_000)
        try:
            page.goto(server.url + "/")
            busy_card = page.locator(f'.card[data-id="{busy}"]')
            busy_card.locator('[data-act="delete"]').click()
            expect(page.locator("#delete-running")).to_have_text(
                "An import is running on it: deleting the dataset stops it.")
            page.click("#delete-confirm")
            expect(busy_card).to_have_count(0)
            SlowZip.release.set()
            assert requests.get(job_url, timeout=10).status_code == 404  # the dataset and its jobs are gone

            # another tab deleted "Other set" since this page loaded
            assert requests.delete(f"{api}/{other}", timeout=10).status_code == 200
            other_card = page.locator(f'.card[data-id="{other}"]')
            other_card.locator('[data-act="rename"]').click()
            page.fill("#rename-name", "Renamed set")
            page.locator("#rename-form button[type=submit]").click()
            expect(page.locator("#rename-dialog")).not_to_be_visible()
            expect(page.get_by_text("Other set is no longer here: it was deleted, in another tab or window.")) \
                .to_be_visible()
            expect(other_card).to_have_count(0)
            expect(page.locator("#empty")).to_be_visible()
        finally:
            SlowZip.release.set()
            browser.close()
