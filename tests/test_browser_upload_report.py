"""What an upload says of the files it did not import: each one named with a plain reason, in the API's result and
in the uploads panel, which reads as a warning (not a green tick) and keeps the list up; and what the Words dialog
says of a dataset with no caption yet."""

from __future__ import annotations

import io

import requests
from PIL import Image

from app.importer import CUT_SHORT, LONE_CAPTION, NOT_READABLE, SVG
from tests import test_datasets_support as support
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

SVG_TEXT = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'


def in_browser(test):
    """The browser tests' marks (tests.browser_studio), on one test: the API tests beside them need no browser."""
    for mark in browser_marks:
        test = mark(test)
    return test


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _six_files() -> list[tuple[str, bytes]]:
    """The QA report's upload: one good image and five files that cannot come in."""
    return [("good.png", image_bytes(1)), ("fake.png", b"this is text, not a picture"),
            ("cut.jpg", _jpeg()[:-60]), ("empty.jpg", b""), ("drawing.svg", SVG_TEXT), ("lonely.txt", b"a caption")]


def test_the_import_result_names_each_refused_file_with_a_plain_reason(client, dataset_id):
    sent = [(name, data) for name, data in _six_files() if not name.endswith(".svg")]
    job = upload(client, dataset_id, sent)
    assert job["status"] == "completed", job
    assert job["result"]["imported"] == ["good.png"]
    reasons = {item["name"]: item["reason"] for item in job["result"]["skipped"]}
    assert reasons == {"fake.png": NOT_READABLE, "cut.jpg": CUT_SHORT, "empty.jpg": "the file is empty (0 bytes)",
                       "lonely.txt": LONE_CAPTION}
    assert not any("Error" in reason for reason in reasons.values())
    assert job["message"] == "Imported 1 image, skipped 4."


def test_a_caption_file_with_its_image_is_not_reported(client, dataset_id):
    job = upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"tok, a cat"), ("b.txt", b"no image")])
    assert job["result"]["skipped"] == [{"name": "b.txt", "reason": LONE_CAPTION}]
    [image] = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert image["caption"] == "tok, a cat"


def test_an_svg_is_refused_with_what_to_do(client, dataset_id):
    created = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "drawing.svg", "size": 90})
    assert created.status_code == 415
    assert created.get_json()["error"] == f"'drawing.svg': {SVG}."


@in_browser
def test_a_mixed_upload_reads_as_a_warning_and_keeps_its_list(studio_root, tmp_path, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    paths = []
    for name, data in _six_files():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Mixed"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", paths)
        status = page.locator("#import-status")
        expect(status).to_contain_text("Imported 1 image; 5 files not imported.", timeout=30_000)
        expect(page.locator("#uploads-title")).to_have_text("Imported 1 of 6")
        headline = status.locator("p").first
        assert "--warn" in headline.get_attribute("style")
        expect(status.locator("details.refused summary")).to_have_text("5 files not imported")
        listed = status.locator("details.refused li")
        expect(listed).to_have_count(5)
        text = " | ".join(listed.all_inner_texts())
        for name, reason in [("fake.png", NOT_READABLE), ("cut.jpg", CUT_SHORT), ("empty.jpg", "empty file"),
                             ("drawing.svg", SVG), ("lonely.txt", LONE_CAPTION)]:
            assert f"{name}: {reason}" in text, text
        assert "Error)" not in text and "✓" not in page.locator("#uploads").inner_text()
        expect(page.locator(".toast.toast-ok")).to_have_count(0)
        # the caption file's row said "uploaded": now it says why nothing came of it
        lonely = page.locator(".upload-row.failed", has_text="lonely.txt")
        expect(lonely).to_contain_text("not imported")
        expect(lonely).to_have_attribute("title", f"lonely.txt: {LONE_CAPTION}")
        page.wait_for_timeout(7000)  # past the moment a finished panel shrinks to one line
        expect(page.locator("#uploads")).not_to_have_class("uploads open compact")
        expect(listed.first).to_be_visible()
        (artifacts_dir / "datasets").mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts_dir / "datasets" / "upload-refused-files.png"))
        assert problems == []
        browser.close()


@in_browser
def test_the_words_dialog_of_a_dataset_with_no_caption_says_so(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Bare", "trigger_word": "brw"},
                                   timeout=10).json()["id"]
        files = [("files", (f"{n}.png", image_bytes(n), "image/png")) for n in range(3)]
        requests.post(f"{server.url}/api/datasets/{dataset_id}/upload?wait=20", files=files,
                      timeout=60).raise_for_status()
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.click("#btn-words")
        summary = page.locator("#words-summary")
        expect(summary).to_have_text("No image is captioned yet (3 images in this dataset): caption them first.")
        expect(summary).not_to_contain_text("every one")
        assert problems == []
        browser.close()
