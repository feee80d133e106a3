"""A laptop whose clock is off: the job page counted the time a job has run (and so its cost and ETA) from the
browser's clock against the pod's start time, off by as much as the laptop's clock. The page takes the pod's time
from its answers' Date header."""

from __future__ import annotations

import re
import time

from tests import browser_studio
from tests.browser_studio import browser_marks, login, open_page

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)


def test_the_time_a_job_has_run_is_the_pods_not_the_laptops(studio):
    from playwright.sync_api import expect, sync_playwright

    from studio.processes import process_token

    store = studio.store()
    job, _ = store.create("train", name="clock", dataset="my-cat", config={"name": "clock", "steps": 10}, total=10)
    store.start(job.id, process_token())  # a live owner: it stays running
    with store.write() as conn:  # it started ten minutes ago, by the pod's clock
        conn.execute("UPDATE jobs SET started_at = ? WHERE id = ?", (time.time() - 600, job.id))
    try:
        with sync_playwright() as p:
            browser, page, problems = open_page(p)
            page.clock.install(time=time.time() + 3 * 3600)  # the laptop's clock three hours ahead
            login(page, studio.trainer)
            page.goto(f"{studio.trainer}/jobs/{job.id}")
            expect(page.locator("#s-elapsed")).to_have_text(re.compile(r"^1[01]m \d+s$"))
            assert problems == []
            browser.close()
    finally:
        store.request_stop(job.id)
        store.finish(job.id, "stopped")
