"""The dataset manager in a real browser against a real server: create, drop a ZIP, thumbnails,
caption edit that survives a reload, find & replace, export. Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import requests
from PIL import Image

from tests.browser_studio import ARGS, CHROMIUM, browser_marks, watch_page
from tests.helpers import ServerProcess
from tests.test_datasets_autocaption import StandIn
from tests.test_datasets_support import image_bytes, zip_bytes

pytestmark = browser_marks

DROP_JS = """([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const file = new File([bytes], name, { type: "application/zip" });
  const dt = new DataTransfer();
  dt.items.add(file);
  for (const type of ["dragenter", "dragover", "drop"]) {
    window.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }
}"""


def test_dataset_manager_in_the_browser(studio_root, artifacts_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = artifacts_dir / "datasets"
    shots.mkdir(exist_ok=True)
    entries = [(f"shoot/photo {i:02d}.png", image_bytes(i, size=(96, 72))) for i in range(8)]
    entries += [("shoot/photo 00.txt", b"a red car on a street"), ("shoot/photo 01.txt", b"a red door"),
                ("notes.pdf", b"%PDF")]
    archive = zip_bytes(entries)
    extra = tmp_path / "single shot.png"
    Image.frombytes("RGB", (800, 800), os.urandom(800 * 800 * 3)).save(extra)  # noise: ~1.9 MB, 2 chunks
    stand_in = StandIn()
    stand_in.delay = 0.25
    env = {"STUDIO_ROOT": str(studio_root), "UPLOAD_CHUNK_MB": "1", "CAPTION_URL": stand_in.url}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems = watch_page(page)  # script errors, API 404s and 5xx the page causes
        page.set_default_timeout(20_000)

        page.goto(server.url + "/")
        expect(page.get_by_text("No datasets yet")).to_be_visible()
        page.screenshot(path=str(shots / "01-empty-index.png"))
        page.click("#new-dataset")
        page.fill("#create-name", "Browser Set")
        page.fill("#create-trigger", "brs")
        page.screenshot(path=str(shots / "02-create-dialog.png"))
        page.click("#create-submit")
        page.wait_for_url("**/d/browser-set")
        expect(page.locator("#trigger-chip")).to_have_text("brs")
        expect(page.get_by_text("Drop images or a ZIP here")).to_be_visible()
        page.screenshot(path=str(shots / "02b-empty-dataset.png"))

        # drag and drop a ZIP onto the page, and pick one more file with the file input
        page.evaluate(DROP_JS, ["shoot.zip", base64.b64encode(archive).decode()])
        expect(page.locator("#import-status")).to_contain_text("Imported 8 images; 1 file not imported", timeout=30_000)
        expect(page.locator("#import-status")).to_contain_text("notes.pdf")
        # every image is small here: removing them all says so before anything goes
        page.locator("#flag-actions button[data-remove='small']").click()
        expect(page.locator("#confirm-text")).to_contain_text("That is every image in this dataset")
        page.locator("#confirm-dialog [data-close]").click()
        expect(page.locator(".tile")).to_have_count(8)
        # the connection drops during the second chunk of the next file: the page retries it
        dropped: list[str] = []

        def drop_once(route):
            if not dropped:
                dropped.append(route.request.url)
                route.abort("connectionreset")
            else:
                route.continue_()

        page.route("**/chunks/1", drop_once)
        page.set_input_files("#file-input", str(extra))
        expect(page.locator("#import-status")).to_contain_text("Imported 1 image", timeout=30_000)
        expect(page.locator(".tile")).to_have_count(9)
        assert len(dropped) == 1
        page.wait_for_function("""() => [...document.querySelectorAll('.tile img')]
                                        .every((img) => img.complete && img.naturalWidth > 0)""")
        page.screenshot(path=str(shots / "03-gallery-after-upload.png"))
        page.click("#uploads-close")

        # edit a caption: autosave shows "Saved", and the text is still there after a reload
        page.locator('.tile[data-name="photo 02.png"]').click()
        expect(page.locator("#ed-name")).to_have_text("photo 02.png")
        page.fill("#caption", "a red bicycle leaning on a wall")
        expect(page.locator("#save-state")).to_have_text("Saved ✓")
        expect(page.locator("#ed-count")).to_contain_text("7 words")
        expect(page.locator("#count-uncaptioned")).to_have_text("6")  # the tab follows at once, no reload
        expect(page.locator("#ds-stats")).to_contain_text("3 captioned")
        page.keyboard.press("Escape")
        page.reload()
        page.locator('.tile[data-name="photo 02.png"]').click()
        expect(page.locator("#caption")).to_have_value("a red bicycle leaning on a wall")
        page.locator("#caption").blur()
        page.keyboard.press("ArrowRight")
        expect(page.locator("#ed-name")).to_have_text("photo 03.png")
        page.screenshot(path=str(shots / "04-caption-editor.png"))

        # find & replace with a preview first
        page.click("#btn-replace")
        page.fill("#find-input", "red")
        page.fill("#replace-input", "blue")
        expect(page.locator("#replace-summary")).to_have_text("3 matches in 3 captions")
        page.screenshot(path=str(shots / "05-find-replace-preview.png"))
        page.click("#replace-apply")
        expect(page.locator("#replace-dialog")).not_to_be_visible()
        page.fill("#search", "blue")
        expect(page.locator(".tile")).to_have_count(3)
        page.fill("#search", "")
        expect(page.locator(".tile")).to_have_count(9)
        expect(page.locator("#btn-undo")).to_be_enabled()

        # auto-caption the uncaptioned images through the caption service
        page.click("#btn-autocaption")
        expect(page.locator("#svc-status")).to_contain_text("Caption service ready")
        page.select_option("#cap-mode", "skip")
        page.select_option("#cap-style", "short")
        page.screenshot(path=str(shots / "06-autocaption-setup.png"))
        page.click("#cap-start")
        expect(page.locator("#cap-cancel")).to_be_visible()
        expect(page.locator("#cap-progress-text")).not_to_have_text("0 / 6 images")
        page.screenshot(path=str(shots / "07-autocaption-running.png"))
        expect(page.locator("#cap-message")).to_contain_text("Captioned 6 of 6 images", timeout=30_000)
        page.click("#caption-dialog [data-close]")
        expect(page.locator("#count-uncaptioned")).to_have_text("0")
        # one image again, from the editor: only it is re-captioned, and the editor shows the new caption
        page.locator('.tile[data-name="photo 02.png"]').click()
        expect(page.locator("#caption")).to_have_value("a blue bicycle leaning on a wall")
        page.click("#ed-caption")
        expect(page.locator("#cap-target")).to_contain_text("Only photo 02.png")
        expect(page.locator("#cap-start")).to_have_text("Re-caption the image (replace)")
        page.click("#cap-start")
        expect(page.locator("#cap-message")).to_contain_text("Captioned 1 of 1 image", timeout=30_000)
        page.click("#caption-dialog [data-close]")
        expect(page.locator("#caption")).to_have_value(re.compile(r"^\d+px "))  # the caption service's answer
        expect(page.locator('.tile[data-name="photo 01.png"] .cap')).not_to_contain_text("px ")
        page.click("#btn-undo")  # the caption it replaced comes back
        expect(page.locator("#caption")).to_have_value("a blue bicycle leaning on a wall")
        # the selected images only
        page.keyboard.press("Escape")
        page.click("#btn-select")
        page.click("#btn-select-all")  # every image the filter shows
        expect(page.locator("#btn-caption-selected")).to_have_text("Caption 9 selected")
        page.click("#btn-select")  # done selecting: the selection goes
        page.click("#btn-select")
        for name in ("photo 05.png", "photo 06.png"):
            page.locator(f'.tile[data-name="{name}"]').click()
        page.click("#btn-caption-selected")
        expect(page.locator("#cap-target")).to_contain_text("Only the 2 selected images")
        page.click("#cap-start")
        expect(page.locator("#cap-message")).to_contain_text("Captioned 2 of 2 images", timeout=30_000)
        page.click("#caption-dialog [data-close]")
        page.click("#btn-select")  # done selecting

        # export for the trainer
        page.click("#btn-export")
        page.fill("#export-name", "browser-set")
        page.click("#export-start")
        expect(page.locator("#export-result")).to_contain_text("Exported 9 images", timeout=30_000)
        train_link = page.locator("#export-train-link").get_attribute("href")
        assert train_link.endswith("/new?dataset=browser-set") and ":8675/" in train_link
        expect(page.locator("#export-versions-summary")).to_have_text("(1)")  # the versions on disk, each deletable
        page.screenshot(path=str(shots / "08-export.png"))
        page.click("#export-dialog [data-close]")

        # a delete can be undone from its toast; Recently deleted puts a whole batch back
        page.locator('.tile[data-name="photo 07.png"]').click()
        page.click("#ed-delete")
        page.click("#confirm-ok")
        expect(page.locator(".tile")).to_have_count(8)
        page.locator(".toast-action", has_text="Undo").click()
        expect(page.locator(".tile")).to_have_count(9)
        expect(page.locator(".toast", has_text="Restored 1 image.")).to_be_visible()
        page.keyboard.press("Escape")
        page.click("#btn-select")
        page.locator('.tile[data-name="photo 03.png"]').click()
        page.locator('.tile[data-name="photo 04.png"]').click()
        page.click("#btn-delete-selected")
        page.click("#confirm-ok")
        expect(page.locator(".tile")).to_have_count(7)
        page.click("#btn-select")  # Select all counts what is left, and follows the filter
        expect(page.locator("#btn-select-all")).to_have_text("Select all 7")
        page.click('#filters button[data-filter="uncaptioned"]')
        expect(page.locator("#btn-select-all")).to_be_hidden()  # nothing to select
        page.click('#filters button[data-filter="all"]')
        expect(page.locator("#btn-select-all")).to_have_text("Select all 7")
        page.click("#btn-select")
        expect(page.locator("#btn-trash")).to_have_text("Recently deleted (2)")
        page.click("#btn-trash")
        expect(page.locator("#trash-list .trash-batch")).to_have_count(1)
        expect(page.locator("#trash-list")).to_contain_text("photo 03.png, photo 04.png")
        expect(page.locator("#trash-list .trash-thumbs img")).to_have_count(2)
        page.wait_for_function("[...document.querySelectorAll('#trash-list img')].every(i => i.naturalWidth > 0)")
        page.screenshot(path=str(shots / "08b-recently-deleted.png"))
        page.click("#trash-list button[data-restore]")
        expect(page.locator(".tile")).to_have_count(9)
        expect(page.locator("#btn-trash")).to_be_hidden()
        page.click("#trash-dialog [data-close]")

        page.goto(server.url + "/")
        expect(page.locator(".card")).to_have_count(1)
        expect(page.locator(".card .meta").first).to_contain_text("9 images · 9 captioned")
        page.screenshot(path=str(shots / "09-index.png"))

        # a deleted dataset comes back: from the toast's Undo, then from Recently deleted
        for restore_from in ("toast", "section"):
            page.locator(".card [data-act=delete]").click()
            page.click("#delete-confirm")
            expect(page.locator(".card")).to_have_count(0)
            if restore_from == "toast":
                page.locator(".toast-action", has_text="Undo").click()
            else:
                page.locator(".toast").first.click()
                page.click("#deleted-summary")
                expect(page.locator("#deleted-list")).to_contain_text("Browser Set")
                page.screenshot(path=str(shots / "10-recently-deleted-datasets.png"))
                page.click("#deleted-list button[data-restore]")
            expect(page.locator(".card")).to_have_count(1)
            expect(page.locator(".card .meta").first).to_contain_text("9 images · 9 captioned")
            expect(page.locator("#deleted")).to_be_hidden()
        # deleted, then a new one of its name made: restored, it comes back beside it under a free name, and the
        # toast says so
        page.locator(".card [data-act=delete]").click()
        page.click("#delete-confirm")
        expect(page.locator(".card")).to_have_count(0)
        requests.post(f"{server.url}/api/datasets", json={"name": "Browser Set"}, timeout=10).raise_for_status()
        page.reload()
        page.click("#deleted-summary")
        page.click("#deleted-list button[data-restore]")
        expect(page.locator(".toast", has_text="Restored Browser Set as Browser Set 2: a dataset named Browser Set was "
                                               "made since.")).to_be_visible()
        expect(page.locator(".card")).to_have_count(2)
        browser.close()
    stand_in.close()

    out = Path(studio_root) / "trainer" / "datasets" / "browser-set"
    assert (out / "photo 02.txt").read_text().strip() == "brs, a blue bicycle leaning on a wall"
    assert json.loads((out / "dataset.json").read_text())["images"] == 9
    assert (out / "photo 05.txt").read_text().strip() == "brs, 96px short image"
    assert problems == []
