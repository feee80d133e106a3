"""Crop, rotate and mirror in a real browser against a real server: the picture, its tile and its size
follow each edit at once (no old picture from the browser's cache), the crop box keeps the chosen shape,
Escape leaves it without a change, and Revert puts the upload back. Screenshots go to test-artifacts/."""

from __future__ import annotations

import io
import re

import pytest
import requests
from PIL import Image, ImageFilter

from tests.browser_studio import DESKTOP, PHONE, browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_sharpness import drawing

pytestmark = browser_marks


def _photo() -> bytes:
    """800x600 with a red top-left corner, so a rotation shows."""
    image = Image.new("RGB", (800, 600), (30, 60, 160))
    image.paste((230, 20, 20), (0, 0, 200, 150))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _out_of_focus() -> bytes:
    buffer = io.BytesIO()
    drawing().filter(ImageFilter.GaussianBlur(3)).save(buffer, "PNG")
    return buffer.getvalue()


def _seed(url: str) -> str:
    dataset_id = requests.post(f"{url}/api/datasets", json={"name": "Edit me"}, timeout=10).json()["id"]
    files = [("files", ("street.png", _photo(), "image/png")), ("files", ("zz soft.png", _out_of_focus(), "image/png"))]
    requests.post(f"{url}/api/datasets/{dataset_id}/upload?wait=20", files=files, timeout=60).raise_for_status()
    return dataset_id


def _drag(page, selector: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drags from one point to another, each given in units of the element's width and height."""
    rect = page.locator(selector).bounding_box()
    page.mouse.move(rect["x"] + rect["width"] * start[0], rect["y"] + rect["height"] * start[1])
    page.mouse.down()
    page.mouse.move(rect["x"] + rect["width"] * end[0], rect["y"] + rect["height"] * end[1], steps=6)
    page.mouse.up()


@pytest.mark.parametrize("viewport", [pytest.param(DESKTOP, id="1280x800"), pytest.param(PHONE, id="390x844")])
def test_crop_rotate_mirror_and_revert_in_the_browser(studio_root, artifacts_dir, tmp_path, viewport):
    from playwright.sync_api import expect, sync_playwright

    shots = artifacts_dir / "datasets"
    shots.mkdir(exist_ok=True)
    tag = f"{viewport['width']}x{viewport['height']}"
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = _seed(server.url)
        browser, page, problems = open_page(p, viewport)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator(".tile")).to_have_count(2)
        # the out-of-focus one is flagged, with its one-click removal
        expect(page.locator(".tile[data-name='zz soft.png'] .badge", has_text="soft")).to_be_visible()
        expect(page.locator("#flag-actions button[data-remove=soft]")).to_have_text("Remove 1 soft image")
        page.select_option("#sort", "softest")  # to look at the softest first
        expect(page.locator(".tile").first).to_have_attribute("data-name", "zz soft.png")
        page.select_option("#sort", "name")
        expect(page.locator(".tile").first).to_have_attribute("data-name", "street.png")
        if viewport == PHONE:
            page.locator(".tile").first.click()  # the editor is a sheet on a phone
        size = page.locator("#ed-size")
        expect(size).to_contain_text("800×600")
        expect(page.locator("#ed-revert")).to_be_hidden()
        # a click shows the picture at its own pixels (to judge focus), another click whole again
        page.click("#preview-img")
        expect(page.locator("#preview.zoomed")).to_have_count(1)
        assert page.evaluate("() => document.getElementById('preview-img').clientWidth") == 800
        page.screenshot(path=str(shots / f"07-zoomed-{tag}.png"))
        page.click("#preview-img")
        expect(page.locator("#preview.zoomed")).to_have_count(0)

        page.click("#ed-rotr")
        expect(size).to_contain_text("600×800")
        expect(size).to_contain_text("rotated")
        expect(page.locator(".tile .badge.edited")).to_have_count(1)
        expect(page.locator(".tile[data-name='street.png'] .badge.edited")).to_be_visible()
        expect(page.locator("#ed-revert")).to_be_visible()
        src = page.locator("#preview-img").get_attribute("src")
        assert "?v=" in src and "?v=" in page.locator(".tile img").first.get_attribute("src")
        # the browser shows the turned picture: taller than wide, red corner now at the top right
        shown = page.evaluate("""() => { const i = document.getElementById('preview-img');
            return i.complete ? [i.naturalWidth, i.naturalHeight] : null; }""")
        assert shown is None or shown == [600, 800]

        # held down, "original" shows the upload; let go, the edit again
        page.hover("#ed-original")
        page.mouse.down()
        expect(page.locator("#preview-img")).to_have_attribute("src", re.compile(r"/original$"))
        page.mouse.up()
        expect(page.locator("#preview-img")).to_have_attribute("src", re.compile(r"\?v="))

        page.keyboard.press("m")  # M mirrors, as the button does
        expect(size).to_contain_text("rotated, mirrored")

        # Crop: a square box, then a drawn one; Escape leaves without a change
        page.click("#ed-crop")
        expect(page.locator("#crop-bar")).to_be_visible()
        page.select_option("#crop-aspect", "1")
        expect(page.locator("#crop-size")).to_have_text("600×600 px")
        page.keyboard.press("Escape")
        expect(page.locator("#crop-bar")).to_be_hidden()
        expect(size).to_contain_text("600×800")
        page.keyboard.press("c")
        page.select_option("#crop-aspect", "0.75")
        _drag(page, ".crop-handle.nw", (0.5, 0.5), (8, 6))  # the top-left corner, dragged in: still 3:4
        text = page.locator("#crop-size").text_content()
        width, height = (int(v) for v in text.split(" ")[0].split("×"))
        assert abs(width / height - 0.75) < 0.02 and width < 600, text
        page.screenshot(path=str(shots / f"07-crop-{tag}.png"))
        page.click("#crop-apply")
        expect(size).to_contain_text(f"{width}×")
        expect(size).to_contain_text("rotated, mirrored, cropped")
        expect(page.locator("#crop-bar")).to_be_hidden()
        stored = requests.get(f"{server.url}/api/datasets/{dataset_id}/images", timeout=10).json()["images"][0]
        assert stored["name"] == "street.png"
        assert stored["width"] == width and stored["original_size"] == [800, 600]

        page.click("#ed-revert")
        expect(page.locator("#confirm-text")).to_contain_text("as it was uploaded")
        page.click("#confirm-ok")
        expect(size).to_have_text(_plain_size("800×600"))
        expect(page.locator("#ed-revert")).to_be_hidden()
        expect(page.locator(".tile .badge.edited")).to_have_count(0)
        page.keyboard.press("Shift+R")  # rotates left; ? lists every key
        expect(size).to_contain_text("600×800")
        page.keyboard.press("?")
        expect(page.locator("#keys-dialog")).to_be_visible()
        expect(page.locator("#keys-dialog")).to_contain_text("rotate right / left")
        page.screenshot(path=str(shots / f"07-keys-{tag}.png"))
        page.keyboard.press("Escape")
        expect(page.locator("#keys-dialog")).to_be_hidden()
        page.click("#ed-revert")
        page.click("#confirm-ok")
        expect(size).to_have_text(_plain_size("800×600"))
        # a caption longer than the text encoder reads says so as it is typed
        page.fill("#caption", "a red corner on a blue wall, " * 70)
        expect(page.locator("#ed-count.over")).to_contain_text("the end is cut off")
        page.fill("#caption", "a red corner on a blue wall")
        expect(page.locator("#ed-count")).not_to_have_class(re.compile("over"))

        # Export's "Before you train" says what trains poorly, and shows those images
        if viewport == PHONE:
            page.click("#ed-close")  # back to the gallery from the editor's sheet
        page.click("#btn-export")
        checks = page.locator("#export-checks")
        # the caption typed just before counts; without a trigger word an uncaptioned image has nothing to train on
        expect(checks).to_contain_text("1 of 2 images has no caption: it trains with an empty caption.")
        expect(checks).to_contain_text("No trigger word")
        expect(checks).to_contain_text("1 image looks soft")
        page.screenshot(path=str(shots / f"08-export-checks-{tag}.png"))
        checks.locator("li", has_text="looks soft").get_by_role("button", name="Show").click()
        expect(page.locator("#export-dialog")).not_to_be_visible()
        expect(page.locator("#filters button.active")).to_contain_text("Flagged")
        expect(page.locator(".tile")).to_have_count(1)
        assert problems == []
        browser.close()


def _plain_size(prefix: str):
    """The size line right after Revert: the size, the file size, and no list of edits."""
    return re.compile(rf"^{re.escape(prefix)} · [\d.]+ [KMGT]?B$")



def test_crop_corners_are_bigger_for_a_finger():
    """On a touch screen (pointer: coarse) the crop box's corners are 24 px and grab 10 px beyond; a mouse keeps
    the small ones."""
    from playwright.sync_api import sync_playwright

    from tests.browser_studio import ARGS, CHROMIUM
    from tests.helpers import REPO

    sizes = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for kind, options in {"finger": {"has_touch": True, "is_mobile": True}, "mouse": {}}.items():
            page = browser.new_context(viewport=PHONE, **options).new_page()
            page.set_content('<div style="position:relative;width:200px;height:200px">'
                             '<span class="crop-handle nw" id="h"></span></div>')
            page.add_style_tag(path=str(REPO / "app" / "static" / "datasets.css"))
            sizes[kind] = page.evaluate("""() => { const h = document.getElementById('h');
                return [getComputedStyle(h).width, getComputedStyle(h, '::after').inset]; }""")
        browser.close()
    assert sizes["finger"] == ["24px", "-10px"]
    assert sizes["mouse"][0] == "14px"
