"""Stopping a running import in a real browser: while a slow link downloads, the uploads panel shows a Stop button
beside the progress; one click (no confirmation) stops it, the panel says how many images came in before the stop
and offers the rest. A local HTTP server stands in for a slow web (the studio runs with ALLOW_PRIVATE_URLS=1)."""

from __future__ import annotations

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_import_stop import slow_web  # noqa: F401 - the slow stand-in web, a fixture

pytestmark = browser_marks


def test_a_running_link_import_stops_from_the_uploads_panel(studio_root, artifacts_dir, tmp_path,
                                                            slow_web):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    shots = artifacts_dir / "datasets"
    shots.mkdir(exist_ok=True)
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "ALLOW_PRIVATE_URLS": "1",
           "MAX_UPLOAD_MB": "300"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Linked"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.click("#btn-link-empty")
        page.fill("#link-url", f"{slow_web}/slow.zip")
        page.click("#link-start")
        status = page.locator("#import-status")
        expect(status).to_contain_text("Downloading slow.zip")
        expect(status).to_contain_text("of 210 MB")  # 200 MiB, as the page counts
        stop = page.locator("#import-stop")
        expect(stop).to_be_visible()
        expect(stop).to_have_text("Stop")
        page.screenshot(path=str(shots / "09-link-import-stop.png"))
        stop.click()  # one click: no confirmation asked
        expect(status).to_contain_text("Stopped: 0 images imported before the stop.")
        expect(page.locator("#uploads-title")).to_have_text("Import stopped")
        expect(stop).to_have_count(0)
        expect(page.locator("#import-resume")).to_have_text("Import the rest")
        job = requests.get(f"{server.url}/api/datasets/{dataset_id}", timeout=10).json()["jobs"]["import"]
        assert job["status"] == "stopped" and 0 < job["bytes_done"] < 200 * 2**20
        expect(page.locator(".tile")).to_have_count(0)
        page.screenshot(path=str(shots / "09-link-import-stopped.png"))
        assert problems == []
        browser.close()
