"""Browser tests of the express page when things go sideways: the start after an upload fails (a proxy's 502), the
run is open in a second tab while the first sends its files, files are dropped beside the drop zone or while the run
goes on, some files of a ZIP cannot be used (one named to be HTML), and a training job between its phases.

The studio is the real one of tests/test_browser_express.py (dataset manager, caption service, trainer, worker)."""

from __future__ import annotations

import io
import json
import zipfile

import requests

from tests.browser_studio import ARGS, CHROMIUM, browser_marks
from tests.test_browser_express import studio  # noqa: F401 - the fixture: the whole studio as subprocesses
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks
HOSTILE = '<img src=x onerror="window.hacked=1">.png'


def _zip(path, count: int, broken: str | None = None) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"cats/cat{i}.png", image_bytes(i, size=(96, 80)))
        if broken:
            archive.writestr(f"cats/{broken}", b"not a picture")
    path.write_bytes(buffer.getvalue())


def _page(browser, errors: list):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.set_default_timeout(30_000)
    return page


def test_a_start_that_fails_after_the_upload_is_said_and_tried_again_without_sending_the_files_twice(
        studio, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    good = tmp_path / "cats.zip"
    _zip(good, count=3, broken=HOSTILE)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        errors: list[str] = []
        page = _page(browser, errors)
        starts, chunks = [], []
        page.on("request", lambda r: chunks.append(r.url) if "/chunks/" in r.url else None)

        def gateway_down(route):  # the proxy in front of the pod answers for it
            starts.append(route.request.url)
            route.fulfill(status=502, content_type="text/html", body="<html>Bad gateway</html>")

        page.route("**/api/express/*/start", gateway_down)
        page.goto(studio["datasets"] + "/express")
        page.set_input_files("#x-files", str(good))
        page.fill("#x-trigger", "zxgate")
        page.click("#x-go")
        # tried again a few times, then said where it shows, with what to do
        expect(page.locator("#x-message")).to_contain_text("the run could not start", timeout=30_000)
        expect(page.locator("#x-message")).to_contain_text("press Upload and go on")
        expect(page.locator("#x-go")).to_be_visible()
        assert len(starts) > 1, starts
        sent = len(chunks)
        assert sent >= 1
        page.unroute("**/api/express/*/start")
        page.click("#x-go")
        expect(page.locator(".x-stage[data-stage=import]")).to_have_class("x-stage completed", timeout=60_000)
        assert len(chunks) == sent  # the files that went up are the ones it starts with
        expect(page.locator("#express-form")).to_be_hidden()
        # the file of the ZIP that is no picture is named, with why, as text
        left_out = page.locator(".x-stage[data-stage=import] .x-skipped")
        expect(left_out).to_contain_text("Left out: ")
        expect(left_out).to_contain_text(HOSTILE)
        expect(left_out).to_contain_text("not an image")
        assert page.evaluate("window.hacked") is None
        assert errors == []
        browser.close()


def test_a_second_tab_says_the_files_may_still_be_arriving_and_follows_the_run(studio, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    good = tmp_path / "cats.zip"
    _zip(good, count=10)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        first = context.new_page()
        first.on("pageerror", lambda exc: errors.append(str(exc)))
        network = context.new_cdp_session(first)
        network.send("Network.enable")  # a slow uplink: the files take a while to go up
        network.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                          "uploadThroughput": 300})
        sessions = []
        first.on("requestfinished", lambda r: sessions.append(r.url) if r.method == "POST" and r.url.endswith(
            "/uploads") else None)
        first.goto(studio["datasets"] + "/express")
        first.set_input_files("#x-files", str(good))
        first.fill("#x-trigger", "zxtabs")
        first.click("#x-go")
        first.wait_for_url("**/express/express-*")
        express_id = first.url.rsplit("/", 1)[1]
        for _ in range(300):  # until the upload session is made: its file is on its way, slowly
            if sessions:
                break
            first.wait_for_timeout(100)
        assert sessions
        second = context.new_page()
        second.on("pageerror", lambda exc: errors.append(str(exc)))
        second.goto(first.url)
        expect(second.locator("#x-message")).to_contain_text("if another tab or window is still sending them")
        expect(first.locator(".x-stage[data-stage=import]")).to_have_class("x-stage completed", timeout=90_000)
        # the files came from the first tab: the second follows the run and asks for no files
        expect(second.locator(".x-stage[data-stage=import]")).to_have_class("x-stage completed", timeout=30_000)
        expect(second.locator("#express-form")).to_be_hidden()
        runs = requests.get(studio["datasets"] + "/api/express", timeout=10).json()["runs"]
        assert [run["id"] for run in runs] == [express_id]
        assert errors == []
        browser.close()


DROP = """([name, where]) => {
  const files = new DataTransfer();
  files.items.add(new File(["not much"], name, { type: "image/png" }));
  const target = where ? document.querySelector(where) : document.body;
  target.dispatchEvent(new DragEvent("dragover", { dataTransfer: files, bubbles: true, cancelable: true }));
  const drop = new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true });
  target.dispatchEvent(drop);
  return drop.defaultPrevented;
}"""


def test_files_dropped_beside_the_drop_zone_or_during_a_run_never_leave_the_page(studio, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        errors: list[str] = []
        page = _page(browser, errors)
        page.goto(studio["datasets"] + "/express")
        # beside the drop zone: the page takes them (a browser left alone opens the file in place of the page)
        assert page.evaluate(DROP, ["cat.png", ".page-head"]) is True
        expect(page.locator("#x-chosen")).to_have_text("1 file, 8 B")
        # a run under way: its files are fixed, the page says what to do with more
        made = requests.post(studio["datasets"] + "/api/express", json={"trigger_word": "zxdrop", "kind": "object"},
                             timeout=10).json()
        files = [("files", (f"c{i}.png", image_bytes(i), "image/png")) for i in range(2)]
        requests.post(f"{studio['datasets']}/api/datasets/{made['express']['dataset']}/upload?wait=20", files=files,
                      timeout=30)
        express_id = made["express"]["id"]
        requests.post(f"{studio['datasets']}/api/express/{express_id}/start", json={}, timeout=10)
        page.goto(f"{studio['datasets']}/express/{express_id}")
        expect(page.locator("#x-stop")).to_be_visible()
        assert page.evaluate(DROP, ["more.png", "#x-stages"]) is True
        expect(page.locator("#toasts")).to_contain_text("goes on with the files it was given")
        assert errors == []
        browser.close()


def test_the_head_of_the_page_says_the_training_step_between_the_jobs_phases(studio):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    made = requests.post(studio["datasets"] + "/api/express", json={"trigger_word": "zxstep", "kind": "object"},
                         timeout=10).json()
    express_id = made["express"]["id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        errors: list[str] = []
        page = _page(browser, errors)

        def training(route):  # the run as it is while its job trains: no message between "Rendering ..." phases
            run = route.fetch().json()
            run["express"].update(status="running", phase="train", message="Training: waiting for the worker.")
            for stage in run["stages"][:3]:
                stage.update(status="completed")
            run["stages"][3].update(status="running", done=7, total=32, message="", job_id="x", loss=0.5)
            route.fulfill(status=200, content_type="application/json", body=json.dumps(run))

        page.route(f"**/api/express/{express_id}", training)
        page.goto(f"{studio['datasets']}/express/{express_id}")
        expect(page.locator("#x-message")).to_have_text("Training: step 7 of 32")
        assert errors == []
        browser.close()
