"""The dashboard and the job page in chromium while a job runs, where what they showed went wrong:

- the job page drew its whole log anew at every poll (every few seconds while a job runs): a reader who selected a
  traceback to copy lost the selection before reaching Ctrl+C;
- the dashboard's running card stood still between the worker's reports: no report comes while previews render (a
  minute or more on a big model), and its elapsed time and ETA froze meanwhile (the job page's tick every second);
- a job set to render no previews promised them "every few steps" all the same;
- a job name of 120 characters without a space (the most the API takes) widened the job page and the dashboard past a
  phone's screen.
"""

from __future__ import annotations

import time

from studio.processes import process_token
from tests.browser_studio import PHONE, assert_no_sideways_scroll, browser_marks, login, open_page, studio  # noqa: F401

pytestmark = browser_marks


def _running_job(studio):  # noqa: F811 - the fixture's name
    """A job this test's process holds as running (no worker runs here): the seeded one, claimed once."""
    store = studio.store()
    running = store.list(("running",), kind="train", limit=10)
    return running[0] if running else store.claim("train", process_token())


def test_text_selected_in_the_log_stays_selected_while_the_log_grows(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    job = _running_job(studio)
    log = studio.workspace.jobs / job.id / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback (most recent call last):\n  RuntimeError: the line to copy\n", "utf-8")
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.goto(f"{studio.trainer}/jobs/{job.id}")
        page.wait_for_function("document.getElementById('log').textContent.includes('the line to copy')")
        page.evaluate("""() => { const range = document.createRange();
          range.selectNodeContents(document.getElementById('log'));
          getSelection().removeAllRanges(); getSelection().addRange(range); }""")
        assert "the line to copy" in page.evaluate("getSelection().toString()")
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("step 2/10 loss 0.4100\n")
        page.wait_for_function("document.getElementById('log').textContent.includes('step 2/10')", timeout=15_000)
        page.wait_for_timeout(5000)  # and a poll that brought nothing new
        assert "the line to copy" in page.evaluate("getSelection().toString()")
        assert problems == []
        browser.close()


def test_the_dashboards_running_card_counts_time_between_reports(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    job = _running_job(studio)
    studio.store().progress(job.id, {"phase": "sampling", "step": 4, "eta_s": 600.0, "it_per_s": 1.5})
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        card = page.locator(f".running-card[data-job='{job.id}']")
        card.wait_for()
        elapsed, eta = card.locator("[data-elapsed]"), card.locator("[data-eta]")
        first = (elapsed.inner_text(), eta.inner_text())
        time.sleep(2.5)  # no report meanwhile: the previews are being rendered
        assert elapsed.inner_text() != first[0]
        assert eta.inner_text() != first[1] and eta.inner_text().startswith("9m")
        assert problems == []
        browser.close()


def test_a_long_job_name_fits_a_phone(studio):  # noqa: F811
    from playwright.sync_api import sync_playwright

    name = "averyverylongjobnamewithoutanyspace" * 4
    job = studio.api(studio.trainer, "/api/jobs", {"name": name[:120], "dataset": "my-cat",
                                                   "config": {"name": "long-name", "steps": 10}})["job"]
    with sync_playwright() as p:
        browser, page, problems = open_page(p, PHONE)
        login(page, studio.trainer)
        page.wait_for_selector(f"#queue a[href='/jobs/{job['id']}']")
        assert_no_sideways_scroll(page)
        page.goto(f"{studio.trainer}/jobs/{job['id']}")
        page.wait_for_selector("#job-status [data-status]")
        assert_no_sideways_scroll(page)
        assert problems == []
        browser.close()


def test_a_job_without_preview_prompts_says_it_renders_none(studio):  # noqa: F811
    """It promised "Preview images appear here every few steps" for a run that was set to render none."""
    from playwright.sync_api import sync_playwright

    job = studio.api(studio.trainer, "/api/jobs", {"name": "no previews", "dataset": "my-cat",
                                                   "config": {"name": "no-previews", "steps": 10,
                                                              "sample_prompts": []}})["job"]
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.goto(f"{studio.trainer}/jobs/{job['id']}")
        page.wait_for_selector("#samples :text('no preview prompts')")
        assert "every few steps" not in page.locator("#samples").inner_text()
        assert problems == []
        browser.close()


def _preview(job_dir, step: int) -> None:
    from PIL import Image

    folder = job_dir / "samples" / f"step_{step}"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (40 * (step % 6), 90, 160)).save(folder / "0.png")
    (folder / "prompts.json").write_text('[{"prompt": "a red cube"}]', "utf-8")


def test_a_new_preview_step_keeps_the_pictures_already_shown(studio):  # noqa: F811
    """The gallery was drawn anew when a preview step came: every picture loaded and painted again, and the one a
    reader had focused lost the focus. A step reported within 2 s of the page's last look at the previews (the one
    that follows a preview step) brought them only with the next report, a minute later while previews render."""
    from playwright.sync_api import sync_playwright

    job = _running_job(studio)
    job_dir = studio.workspace.jobs / job.id
    _preview(job_dir, 10)
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.goto(f"{studio.trainer}/jobs/{job.id}")
        first = page.locator("#samples img").first
        first.wait_for()
        page.wait_for_function("[...document.querySelectorAll('#samples img')].every((i) => i.naturalWidth)")
        first.evaluate("(img) => { window.shownBefore = img; img.focus(); }")
        _preview(job_dir, 20)
        studio.store().progress(job.id, {"step": 20})  # one report, and no other after it
        page.wait_for_function("document.querySelectorAll('#samples .gallery-step').length === 2", timeout=20_000)
        assert page.evaluate("window.shownBefore.isConnected")  # the same picture, not loaded again
        assert page.evaluate("document.activeElement === window.shownBefore")
        assert page.locator("#samples h3").first.inner_text() == "Step 20"  # the newest first
        assert problems == []
        browser.close()
