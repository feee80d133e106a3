"""A big gallery stays light: scrolled to its end, the tiles far above keep their place, name and selection but no
picture, badges or caption (a few screens' worth are drawn, not every page loaded); they come back, up to date, when
scrolled to again. Select all still counts every image, a refresh reaches the empty tiles too, and the arrow keys still
walk the grid."""

from __future__ import annotations

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_scale_gallery_select_all_browser import many_images

pytestmark = browser_marks

N = 600  # four pages of 150: far more tiles than a few screens hold

DRAWN = """() => [...document.querySelectorAll('#grid .tile')].filter((t) => t.querySelector('img')).length"""
SHOWN = """(name) => { const t = document.querySelector(`#grid .tile[data-name="${name}"]`);
  const i = t && t.querySelector('img'); return !!i && i.complete && i.naturalWidth > 0; }"""


def scroll_to_end(page, tiles, expect) -> None:
    for _ in range(40):
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        if tiles.count() == N:
            break
        page.wait_for_timeout(300)
    expect(tiles).to_have_count(N)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")


def test_far_tiles_hold_no_picture_and_every_feature_still_works(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Many"}, timeout=10).json()["id"]
        many_images(studio_root, dataset_id, N)
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        tiles = page.locator("#grid .tile")
        expect(tiles).to_have_count(150)
        expect(page.locator('.tile[data-name="img_0000.png"] .cap')).to_have_text("a cat, number 0")

        # at the end: every tile is there, those far above are empty (no thumbnail kept decoded)
        scroll_to_end(page, tiles, expect)
        first = page.locator('.tile[data-name="img_0000.png"]')
        expect(first.locator("img")).to_have_count(0)
        expect(first.locator(".cap")).to_have_count(0)
        page.wait_for_function(SHOWN, arg="img_0599.png")
        expect(page.locator('.tile[data-name="img_0599.png"] .cap')).to_have_text("a cat, number 599")
        drawn = page.evaluate(DRAWN)
        assert 0 < drawn < N / 2, drawn

        # Select all: every image, the empty tiles marked too
        page.click("#btn-select")
        page.click("#btn-select-all")
        expect(page.locator("#btn-delete-selected")).to_have_text(f"Delete {N} selected")
        expect(page.locator("#grid .tile.selected")).to_have_count(N)
        assert page.evaluate("ds.state.selected.size") == N
        page.click("#btn-select")  # done selecting: none picked
        expect(page.locator("#grid .tile.selected")).to_have_count(0)

        # a caption changed elsewhere while its tile is far: the refresh keeps the tile empty, and it shows the new
        # caption when scrolled to again
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # the buttons above brought the top back
        expect(first.locator("img")).to_have_count(0)
        requests.put(
            f"{server.url}/api/datasets/{dataset_id}/captions/img_0001.png", json={"caption": "a dog now"}, timeout=10
        ).raise_for_status()
        page.evaluate("ds.refresh()")
        expect(page.locator('.tile[data-name="img_0001.png"] img')).to_have_count(0)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_function(SHOWN, arg="img_0000.png")
        expect(page.locator('.tile[data-name="img_0001.png"] .cap')).to_have_text("a dog now")
        expect(page.locator('.tile[data-name="img_0001.png"] .badge.nocap')).to_have_count(0)
        expect(page.locator('.tile[data-name="img_0599.png"] img')).to_have_count(0)  # now the end is far
        assert 0 < page.evaluate(DRAWN) < N / 2

        # the arrow keys walk the grid: the tile they reach is drawn and marked, however far it was
        page.locator('.tile[data-name="img_0000.png"]').click()
        expect(page.locator("#ed-pos")).to_have_text(f"1 / {N}")
        page.locator("#grid").focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        expect(page.locator("#ed-pos")).to_have_text(f"4 / {N}")
        expect(page.locator("#grid .tile.current")).to_have_attribute("data-name", "img_0003.png")
        page.evaluate("ds.state.images.length && window.scrollTo(0, document.body.scrollHeight)")
        expect(page.locator("#grid .tile.current img")).to_have_count(0)
        page.keyboard.press("ArrowRight")  # back to it: scrolled into view, drawn again
        expect(page.locator("#grid .tile.current")).to_have_attribute("data-name", "img_0004.png")
        page.wait_for_function(SHOWN, arg="img_0004.png")
        expect(page.locator('.tile[data-name="img_0004.png"] .cap')).to_have_text("a cat, number 4")
        assert problems == []
        browser.close()
