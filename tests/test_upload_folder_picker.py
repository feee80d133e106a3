"""A folder chosen with "Choose a folder" (a page with no images yet) comes in as a dropped one does: every image of it
and its subfolders, each caption paired by its path, what a system leaves in folders left out."""

from __future__ import annotations

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes
from tests.test_upload_folder_drop import _images, holiday_folder

pytestmark = browser_marks


def test_a_chosen_folder_is_imported_with_its_subfolders_and_their_captions(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    folder = holiday_folder(tmp_path)
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Pick"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator("#btn-upload-folder")).to_be_visible()
        with page.expect_file_chooser() as chooser:
            page.locator("#btn-upload-folder").click()
        chooser.value.set_files(str(folder))
        expect(page.locator("#import-status")).to_contain_text("Imported 2 images.", timeout=30_000)
        expect(page.locator("#upload-rows .upload-row")).to_have_count(4)  # 2 images, 2 captions; no .DS_Store
        images = _images(server, dataset_id)  # the folder picker gives the files in the order the system lists them
        assert sorted(images) == ["1.png", "1_2.png"] and sorted(images.values()) == ["grass", "sand"]
        seed_of = {image_bytes(1): 1, image_bytes(2): 2}
        paired = {seed_of[(studio_root / "datasets" / dataset_id / name).read_bytes()]: caption
                  for name, caption in images.items()}
        assert paired == {1: "sand", 2: "grass"}  # each caption with the image beside it in its folder
        assert problems == []
        browser.close()
