"""The trainer's pages with the keyboard: a Stop pressed with Enter goes out of sight when the job stops, and the focus
went back to the page's start (the next Tab began again from the top bar); a picture's lightbox let Tab reach the page
behind it while it stayed open; the job's status was rewritten at every step, so a screen reader could not be told
when it changed."""

from __future__ import annotations

from tests.browser_studio import browser_marks, login, open_page, studio  # noqa: F401
from tests.test_job_page_live_updates import _running_job

pytestmark = browser_marks


def test_stop_pressed_from_the_keyboard_leaves_the_focus_in_the_jobs_bar(studio):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    job = _running_job(studio)
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.goto(f"{studio.trainer}/jobs/{job.id}")
        page.wait_for_selector("#job-status [data-status='running']")
        assert page.get_attribute("#job-status", "role") == "status"
        page.focus("#btn-stop")
        page.keyboard.press("Enter")
        expect(page.locator("#confirm-cancel")).to_be_focused()  # asked in the page, the keyboard on Cancel
        page.keyboard.press("Tab")
        expect(page.locator("#confirm-ok")).to_have_text("Stop the job")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('btn-stop').disabled")
        studio.store().finish(job.id, "stopped", resumable=True, message="Stopped at step 0.")  # the worker's part
        page.wait_for_selector("#btn-stop", state="hidden")
        page.wait_for_function("document.activeElement.closest('.page-head .actions') !== null")
        assert page.evaluate("document.activeElement.offsetParent !== null")  # a control in sight
        assert problems == []
        browser.close()


def test_tab_stays_on_an_open_lightbox(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.evaluate("trainer.lightbox('/favicon.ico', 'a picture')")
        page.wait_for_selector(".lightbox[aria-modal='true']")
        for _ in range(3):
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.classList.contains('lightbox')")
        page.keyboard.press("Escape")
        assert page.locator(".lightbox").count() == 0
        assert problems == []
        browser.close()
