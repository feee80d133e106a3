"""Every page of both apps at 1280x800 and at a phone's 390x844, in chromium: no sideways scroll, every
top-bar link on screen, no 404 (the favicon included), and on a phone a tapped thumbnail opens the
caption editor where the user is instead of 2,000 px below. Screenshots go to test-artifacts/layout/."""

from __future__ import annotations

import pytest

from tests import browser_studio
from tests.browser_studio import (
    ARGS,
    CHROMIUM,
    NOTICES,
    PHONE,
    VIEWPORTS,
    assert_no_sideways_scroll,
    browser_marks,
    login,
)

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)

OFFSCREEN_TOPBAR = """() => [...document.querySelectorAll('.topbar a, .topbar button, .topbar .chip')]
  .filter((e) => { const r = e.getBoundingClientRect();
                   return r.width === 0 || r.left < 0 || r.right > window.innerWidth + 0.5; })
  .map((e) => e.textContent.trim())"""


def _pages(studio):
    """(name, url, a selector that shows the page has rendered its data)."""
    return [("datasets", studio.datasets + "/", ".card"),
            ("gallery", f"{studio.datasets}/d/{studio.dataset_id}", ".tile"),
            ("dashboard", studio.trainer + "/", "#recent tbody tr"),
            ("new-job", studio.trainer + "/new?dataset=my-cat", "#est-time .est-kind"),
            ("job", f"{studio.trainer}/jobs/{studio.job_id}", "#log:not(:empty)"),
            ("library", studio.trainer + "/library", "#library .empty")]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_page_fits_the_window_with_its_top_bar(studio, viewport, artifacts_dir):
    from playwright.sync_api import sync_playwright

    shots = artifacts_dir / "layout"
    shots.mkdir(exist_ok=True)
    size = f"{viewport['width']}x{viewport['height']}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(20_000)
        missing, errors = [], []
        page.on("response", lambda r: r.status == 404 and missing.append(r.url))
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        page.goto(studio.trainer + "/login")
        assert_no_sideways_scroll(page)
        page.screenshot(path=str(shots / f"{size}-login.png"))
        login(page, studio.datasets)  # one cookie for both services
        for name, url, ready in _pages(studio):
            page.goto(url)
            page.wait_for_selector(ready, state="attached")
            if name == "job":  # what the run changed on its own, each notice in full
                page.wait_for_function(f"document.querySelectorAll('#notices li').length === {len(NOTICES)}")
                assert page.locator("#notices li").first.inner_text() == NOTICES[0]
            page.wait_for_timeout(300)  # late layout: thumbnails, fonts
            assert_no_sideways_scroll(page)
            assert page.evaluate(OFFSCREEN_TOPBAR) == [], f"{name}: top-bar links off screen"
            page.screenshot(path=str(shots / f"{size}-{name}.png"))
        for base in (studio.datasets, studio.trainer):
            page.goto(base + "/")
            status, kind = page.evaluate("fetch('/favicon.ico').then((r) => [r.status, r.headers.get('content-type')])")
            assert status == 200 and kind == "image/vnd.microsoft.icon"
            assert page.locator("link[rel=icon]").get_attribute("href") == "/favicon.ico"
        browser.close()
    assert missing == [], f"404s: {missing}"
    assert errors == []


IN_VIEW = """(id) => { const r = document.getElementById(id).getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }"""


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_tapped_thumbnail_opens_the_editor_in_view(studio, viewport, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    phone = viewport == PHONE
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=viewport, has_touch=phone, is_mobile=phone)
        page.set_default_timeout(20_000)
        login(page, studio.datasets)
        page.goto(f"{studio.datasets}/d/{studio.dataset_id}")
        expect(page.locator(".tile")).to_have_count(8)
        last = page.locator(".tile").last
        last.scroll_into_view_if_needed()
        scrolled = page.evaluate("window.scrollY")
        where = last.bounding_box()["y"]  # where the tile stands in the window
        if phone:
            assert scrolled > 400  # the grid is long on a phone: the last tile is far down
            expect(page.locator("#editor")).not_to_be_visible()  # no editor 2,000 px below the grid
            last.tap()
        else:
            last.click()
        expect(page.locator("#ed-name")).to_have_text(last.get_attribute("data-name"))
        expect(page.locator("#caption")).to_be_visible()
        assert page.evaluate(IN_VIEW, "caption") and page.evaluate(IN_VIEW, "preview-img")
        assert_no_sideways_scroll(page)
        page.screenshot(path=str(artifacts_dir / "layout" / f"{viewport['width']}-editor.png"))
        position = page.locator("#ed-pos").bounding_box()  # "8 / 8" on one line (it was squeezed to a column)
        assert position["height"] < 24 and position["width"] > 20, position
        if phone:
            page.fill("#caption", "a sleepy cat on a sofa")
            page.click("#ed-close")  # back where the user was, and the caption is saved
            expect(page.locator("#editor")).not_to_be_visible()
            expect(last.locator(".cap")).to_have_text("a sleepy cat on a sofa")  # the grid shows it again
            # the tile stands where it stood (the page may have grown above it meanwhile: the browser keeps
            # the tile in place then, not the scroll offset)
            assert abs(last.bounding_box()["y"] - where) < 5
        else:
            expect(page.locator("#ed-close")).not_to_be_visible()
        browser.close()
