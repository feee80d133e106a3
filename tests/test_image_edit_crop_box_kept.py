"""The crop box a user drew stays while the gallery shows the same picture again: an upload importing in the
background reloads the rows (every 60 images, and at its end), and the box must not jump back to its start,
nor the page throw while the rows are away."""

from __future__ import annotations

import io

import requests
from PIL import Image

from tests.browser_studio import DESKTOP, browser_marks, open_page
from tests.helpers import ServerProcess

pytestmark = browser_marks


def _png(size=(800, 600), colour=(30, 60, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_reload_while_cropping_keeps_the_drawn_box(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Crop"}, timeout=10).json()["id"]
        requests.post(f"{server.url}/api/datasets/{dataset_id}/upload?wait=20",
                      files=[("files", ("a.png", _png(), "image/png"))], timeout=60).raise_for_status()
        browser, page, problems = open_page(p, DESKTOP)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator("#ed-size")).to_contain_text("800×600")
        page.click("#ed-crop")
        rect = page.locator("#crop-layer").bounding_box()
        page.mouse.move(rect["x"] + rect["width"] * 0.05, rect["y"] + rect["height"] * 0.05)
        page.mouse.down()
        page.mouse.move(rect["x"] + rect["width"] * 0.5, rect["y"] + rect["height"] * 0.6, steps=6)
        page.mouse.up()
        drawn = page.locator("#crop-size").text_content()
        assert drawn.startswith("3") and "720×540" not in drawn, drawn  # about 360×330, not the box it starts with

        # another image imported meanwhile, and the gallery reloads its rows as an upload does; the window
        # is resized while the rows are away
        requests.post(f"{server.url}/api/datasets/{dataset_id}/upload?wait=20",
                      files=[("files", ("b.png", _png(colour=(200, 60, 30)), "image/png"))],
                      timeout=60).raise_for_status()
        away = page.evaluate("""async () => {
            const reload = ds.reload();
            for (let i = 0; i < 200 && ds.state.current !== -1; i++) await new Promise((r) => setTimeout(r, 1));
            const current = ds.state.current;
            window.dispatchEvent(new Event("resize"));
            await reload;
            return current; }""")
        assert away == -1
        expect(page.locator(".tile")).to_have_count(2)
        expect(page.locator("#crop-bar")).to_be_visible()
        expect(page.locator("#crop-size")).to_have_text(drawn)
        page.click("#crop-apply")
        expect(page.locator("#ed-size")).to_contain_text(drawn.split(" ")[0] + " ")
        assert problems == []
        browser.close()
