"""The picture in the dataset editor zooms from the keyboard too (it was mouse-only): Z, or Enter on the focused
picture, shows it at its own pixels from its centre; the arrows on the picture move around it (elsewhere they go on
choosing the image); Esc shows it whole without closing anything; the shortcuts list says so."""

from __future__ import annotations

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_browser_image_edit import _seed

pytestmark = browser_marks


def test_the_picture_zooms_and_pans_from_the_keyboard(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = _seed(server.url)
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator(".tile")).to_have_count(2)
        expect(page.locator("#ed-size")).to_contain_text("800×600")  # street.png, open in the editor
        picture = page.locator("#preview-img")
        expect(picture).to_have_attribute("role", "button")
        expect(picture).to_have_attribute("aria-pressed", "false")

        page.keyboard.press("z")
        expect(page.locator("#preview.zoomed")).to_have_count(1)
        expect(picture).to_have_attribute("aria-pressed", "true")
        scroll = "() => [document.getElementById('preview').scrollLeft, document.getElementById('preview').scrollTop]"
        centred = page.evaluate(scroll)
        assert centred[0] > 0 and centred[1] > 0  # from its centre, not its corner
        page.keyboard.press("Escape")
        expect(page.locator("#preview.zoomed")).to_have_count(0)
        expect(page.locator("#editor")).to_be_visible()  # Esc only showed it whole

        picture.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#preview.zoomed")).to_have_count(1)
        before = page.evaluate(scroll)
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowUp")
        page.wait_for_function(f"() => ({scroll})()[0] < {before[0]} && ({scroll})()[1] < {before[1]}")
        expect(page.locator("#ed-size")).to_contain_text("800×600")  # the arrows moved around it, not to the next image
        page.keyboard.press(" ")
        expect(page.locator("#preview.zoomed")).to_have_count(0)

        page.locator("#grid").focus()  # off the picture, the arrows choose the image as before
        page.keyboard.press("ArrowRight")
        expect(page.locator("#ed-size")).not_to_contain_text("800×600")

        page.keyboard.press("?")
        expect(page.locator("#keys-dialog")).to_contain_text("see it at full size")
        expect(page.locator("#keys-dialog .kbd", has_text="Z")).to_have_count(1)
        assert not problems, problems
        browser.close()
