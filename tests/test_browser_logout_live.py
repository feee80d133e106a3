""""Log out" in one tab: the trainer's other open pages stop following the jobs and say they were logged out, with a
way back in, instead of going on showing progress to whoever sits at the screen (their live stream is ended by the
server, and a poll that is refused is taken for what it is)."""

from __future__ import annotations

from tests.browser_studio import ARGS, CHROMIUM, DESKTOP, browser_marks, login, studio, watch_page  # noqa: F401

pytestmark = browser_marks


def test_a_logout_in_another_tab_stops_the_live_page_and_says_so(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport=DESKTOP)  # two tabs of one browser: one login
        context.set_default_timeout(20_000)
        page = context.new_page()
        problems = watch_page(page)
        login(page, studio.trainer)
        page.wait_for_selector("#now")
        other = context.new_page()
        other.goto(f"{studio.trainer}/logout")
        other.click("form[action='/logout'] button")
        other.wait_for_url(f"{studio.trainer}/login*")
        banner = page.locator("#signed-out-banner")
        banner.wait_for(timeout=20_000)
        assert "Logged out: this page no longer updates" in banner.inner_text()
        banner.locator("a").click()
        page.wait_for_url(f"{studio.trainer}/login?next=%2F")
        assert problems == []
        browser.close()
