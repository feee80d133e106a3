"""Browser tests of the trainer dashboard's queue: a job being stopped, and a queue longer than /api/jobs lists."""

from __future__ import annotations

import pytest

from studio.processes import process_token
from tests.browser_studio import browser_marks, login, open_page, studio  # noqa: F401 (the fixture)

pytestmark = browser_marks
playwright_api = pytest.importorskip("playwright.sync_api")


def test_a_job_asked_to_stop_shows_as_stopping_with_its_stop_button_off(studio):  # noqa: F811
    store = studio.store()
    job = store.claim("train", process_token())  # this test's process holds it: it stays running
    assert job.id == studio.job_id
    store.request_stop(job.id, reason="Stopping: saving a checkpoint.")
    with playwright_api.sync_playwright() as p:
        browser, page, problems = open_page(p)
        try:
            login(page, studio.trainer)
            card = page.locator(f".running-card[data-job='{job.id}']")
            playwright_api.expect(card.locator("[data-status]")).to_have_text("stopping")
            playwright_api.expect(card).to_contain_text("Saving a checkpoint, then stopping")
            playwright_api.expect(card.locator(f"[data-stop='{job.id}']")).to_be_disabled()
            assert problems == []
        finally:
            browser.close()
    store.finish(job.id, "stopped", message="Stopped.", resumable=True)


def test_polled_dashboard_lists_every_queued_job_when_more_than_fifty_jobs_are_newer(studio):  # noqa: F811
    store = studio.store()
    ids = [store.create("train", name=f"batch {i:02}", recipe="zimage-turbo", dataset="my-cat",
                        config={"name": f"b{i}", "steps": 10}, total=10)[0].id for i in range(60)]
    with playwright_api.sync_playwright() as p:
        browser, page, problems = open_page(p)
        try:
            page.route("**/api/events*", lambda route: route.abort())  # the stream fails: the page polls
            login(page, studio.trainer)
            playwright_api.expect(page.locator("#queue-count")).to_have_text("60 waiting", timeout=30_000)
            rows = page.locator("#queue tr.job-row")
            playwright_api.expect(rows.first).to_contain_text("batch 00")  # the oldest runs first
            playwright_api.expect(rows.last).to_contain_text("batch 59")
            rows.last.locator("[data-run-next]").click()
            playwright_api.expect(rows.first).to_contain_text("batch 59")
            playwright_api.expect(page.locator("#queue-count")).to_have_text("60 waiting")
            playwright_api.expect(rows.nth(1)).to_contain_text("batch 00")
            assert problems == []
        finally:
            browser.close()
    for job_id in ids:
        store.delete(job_id)


def test_a_stream_the_proxy_answers_with_an_error_page_falls_back_to_polling(studio):  # noqa: F811
    """The proxy answering /api/events with a 502 page made the browser give the stream up after one error: the
    page waited for three, never polled, and the dashboard froze."""
    store = studio.store()
    job, _ = store.create("train", name="seen by polling", recipe="zimage-turbo", dataset="my-cat",
                          config={"name": "polled", "steps": 10}, total=10)
    with playwright_api.sync_playwright() as p:
        browser, page, problems = open_page(p)
        try:
            page.route("**/api/events*", lambda route: route.fulfill(status=502, body="Bad gateway"))
            login(page, studio.trainer)
            playwright_api.expect(page.locator("#queue")).to_contain_text("seen by polling", timeout=30_000)
            store.update(job.id, name="renamed meanwhile")
            playwright_api.expect(page.locator("#queue")).to_contain_text("renamed meanwhile", timeout=30_000)
            assert [problem for problem in problems if "/api/events" not in problem] == []  # (the proxy's 502)
        finally:
            browser.close()
    store.delete(job.id)
