"""A folder dropped on the dataset page comes in whole: its files and its subfolders' files go up named by their path
in it, so each caption pairs with the image beside it and two "1.png" of two folders both come in; what a system
leaves in folders (.DS_Store) is left out without a word. And a file of a type the studio does not take is refused
by the page with a sentence that names the types it takes."""

from __future__ import annotations

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


def _drop(page, paths: list[str]) -> None:
    """A real drop of files or folders from the desktop (Chromium's DevTools protocol: a page cannot make one)."""
    cdp = page.context.new_cdp_session(page)
    data = {"items": [], "files": paths, "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        cdp.send("Input.dispatchDragEvent", {"type": kind, "x": 400, "y": 400, "data": data})


def _images(server, dataset_id: str) -> dict[str, str]:
    listed = requests.get(f"{server.url}/api/datasets/{dataset_id}/images", timeout=10).json()["images"]
    return {image["name"]: image["caption"] for image in listed}


def holiday_folder(tmp_path):
    """holiday/beach/1.png with "sand", holiday/hills/1.png with "grass", and a .DS_Store."""
    folder = tmp_path / "holiday"
    for sub, seed, caption in (("beach", 1, "sand"), ("hills", 2, "grass")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "1.png").write_bytes(image_bytes(seed))
        (folder / sub / "1.txt").write_text(caption)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return folder


def test_a_dropped_folder_is_imported_with_its_subfolders_and_their_captions(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    folder = holiday_folder(tmp_path)
    (folder / "top.png").write_bytes(image_bytes(3))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Drop"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator("#btn-upload")).to_be_visible()
        _drop(page, [str(folder)])
        expect(page.locator("#import-status")).to_contain_text("Imported 3 images.", timeout=30_000)
        expect(page.locator("#upload-rows .upload-row")).to_have_count(5)  # 3 images, 2 captions; no .DS_Store
        expect(page.locator("#upload-rows")).to_contain_text("holiday/beach/1.png")
        assert _images(server, dataset_id) == {"1.png": "sand", "1_2.png": "grass", "top.png": ""}
        assert problems == []
        browser.close()


def test_a_file_the_studio_does_not_take_is_refused_naming_what_it_takes(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "a.png").write_bytes(image_bytes(1))
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Types"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.set_input_files("#file-input", [str(tmp_path / "notes.pdf"), str(tmp_path / "a.png")])
        refused = page.locator("#import-status details.refused li")
        expect(refused).to_have_count(1, timeout=30_000)
        text = refused.inner_text()
        assert text.startswith("notes.pdf: a .pdf file is not imported: the studio takes "), text
        for ext in (".jpg", ".png", ".webp", ".zip", ".parquet", ".txt", ".mp4"):
            assert ext in text, text
        assert problems == []
        browser.close()
