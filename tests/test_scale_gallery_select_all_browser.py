"""Select all in a large dataset: every image the filter shows is selected from one request for their names, not by
loading and drawing every page of the grid first (3,000 images took 20 requests and 11 s); the pages scrolled to
later come already selected, and Delete takes them all (with Undo). A refresh asks only for the rows on show."""

from __future__ import annotations

import requests

from app.store import Dataset
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks

N = 400  # pages of 150: the grid holds the first only until scrolled


def many_images(studio_root, dataset_id: str, count: int) -> None:
    """`count` small captioned images put straight into a dataset (img_0000.png, ...): quicker than uploading them."""
    dataset = Dataset(dataset_id, studio_root / "datasets" / dataset_id)
    picture = image_bytes(1, size=(64, 64))
    with dataset.lock():
        meta = dataset.meta()
        for i in range(count):
            name = f"img_{i:04d}.png"
            (dataset.folder / name).write_bytes(picture)
            dataset.write_caption(name, f"a cat, number {i}")
            meta["images"][name] = {"width": 64, "height": 64, "bytes": len(picture), "added_at": i}
        dataset.save_meta(meta)


def test_select_all_selects_every_image_without_loading_every_page(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Many"}, timeout=10).json()["id"]
        many_images(studio_root, dataset_id, N)
        browser, page, problems = open_page(p)
        listed = []
        page.on("request", lambda r: listed.append(r.url) if "/images?" in r.url else None)
        page.goto(f"{server.url}/d/{dataset_id}")
        tiles = page.locator("#grid .tile")
        expect(tiles).to_have_count(150)
        # a refresh (every few images of an auto-caption run) asks for the rows on show, not 500 a time
        page.evaluate("ds.refresh()")
        assert "limit=150" in listed[-1] and sum("limit=500" in url for url in listed) == 0
        page.click("#btn-select")
        expect(page.locator("#btn-select-all")).to_have_text(f"Select all {N}")
        page.click("#btn-select-all")
        expect(page.locator("#btn-delete-selected")).to_have_text(f"Delete {N} selected")
        assert page.evaluate("ds.state.selected.size") == N
        assert sum("names=1" in url for url in listed) == 1
        assert sum("offset=" in url and "filter=" in url for url in listed) == 1  # no page loaded for it
        assert tiles.count() == 150
        expect(page.locator("#grid .tile.selected")).to_have_count(150)
        # the pages scrolled to afterwards come selected
        for _ in range(10):
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            if tiles.count() == N:
                break
            page.wait_for_timeout(300)
        expect(tiles).to_have_count(N)
        expect(page.locator("#grid .tile.selected")).to_have_count(N)
        page.click("#btn-delete-selected")
        expect(page.locator("#confirm-title")).to_have_text(f"Delete {N} images?")
        page.click("#confirm-ok")
        expect(tiles).to_have_count(0)
        page.locator(".toast-action", has_text="Undo").click()
        expect(page.locator("#count-all")).to_have_text(str(N))
        expect(tiles).to_have_count(150)
        assert problems == []
        browser.close()
