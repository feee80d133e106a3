"""The dashboard follows a training job every step: each update used to draw the running card, the queue and the
recent jobs anew, so the Stop, Run next or Cancel button a click was landing on was replaced under the pointer (the
click was lost) and a ticked compare box went with it. Now only what changed changes."""

from __future__ import annotations

import pytest

from studio.processes import process_token
from tests.browser_studio import browser_marks, login, open_page, studio  # noqa: F401 (the fixture)

pytestmark = browser_marks
playwright_api = pytest.importorskip("playwright.sync_api")


def test_a_live_update_keeps_the_buttons_and_boxes_it_did_not_change(studio):  # noqa: F811
    store = studio.store()
    job = store.claim("train", process_token())  # this test's process holds it: it stays running
    waiting, _ = store.create("train", name="next in line", recipe="zimage-turbo", dataset="my-cat",
                              config={"name": "next", "steps": 10}, total=10)
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as p:
        browser, page, problems = open_page(p)
        try:
            login(page, studio.trainer)
            card = page.locator(f".running-card[data-job='{job.id}']")
            expect(card).to_be_visible()
            expect(page.locator(f"#queue [data-cancel='{waiting.id}']")).to_be_visible()
            page.locator(f"#recent [data-pick='{waiting.id}']").check()
            page.evaluate("""() => { window.__kept = [
                document.querySelector('.running-card [data-stop]'), document.querySelector('#queue [data-cancel]'),
                document.querySelector('#recent [data-pick]:checked')]; }""")
            store.progress(job.id, {"step": 3, "loss": 0.5})  # the live stream sends the new numbers
            expect(card).to_contain_text("3")
            store.progress(job.id, {"step": 4, "loss": 0.4})
            expect(page.locator(f"#recent tr[data-job='{job.id}']")).to_contain_text("4/")
            kept = page.evaluate("() => window.__kept.map((el) => el && el.isConnected)")
            assert kept == [True, True, True], kept  # the same nodes: a click on them lands
            expect(page.locator(f"#recent [data-pick='{waiting.id}']")).to_be_checked()
            assert problems == []
        finally:
            browser.close()
    store.finish(job.id, "stopped", message="Stopped.", resumable=True)
    store.delete(waiting.id)
