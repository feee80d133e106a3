"""The new job form, in chromium against real servers, never holds a setting the user cannot see or clear: a key
misspelt in the text view goes once the text no longer states it, a copied job from before an update loses the setting
the trainer no longer has (and says so), and a number the browser cannot read is named instead of taken as
"automatic"."""

from __future__ import annotations

import pytest

from tests import browser_studio
from tests.browser_studio import ARGS, CHROMIUM, DESKTOP, browser_marks, login

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)


@pytest.fixture
def page(studio):
    """A chromium page logged in to the studio, and the script errors it raised."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(20_000)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        login(page, studio.datasets)
        page.errors = errors
        yield page
        browser.close()


def _open_form(page, url, lora="my-cat-2"):
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#f-name")).to_have_value(lora)  # built, with a free LoRA name
    expect(page.locator("#start")).to_be_enabled()


def _type_text(page, text: str) -> None:
    page.fill("#config-text", text)
    page.locator("#f-job-name").click()  # leaving the text view reads it


def test_a_misspelt_setting_goes_once_the_text_no_longer_states_it(studio, page):
    from playwright.sync_api import expect

    _open_form(page, studio.trainer + "/new?dataset=my-cat")
    _type_text(page, '{"stpes": 100}')
    expect(page.locator("#problems")).to_contain_text("stpes")
    expect(page.locator("#start")).to_be_disabled()
    _type_text(page, '{"steps": 100}')  # the mistake corrected: the text no longer states it
    expect(page.locator("#f-steps")).to_have_value("100")
    expect(page.locator("#problems")).not_to_contain_text("stpes")
    expect(page.locator("#start")).to_be_enabled()
    assert "stpes" not in page.locator("#config-text").input_value()
    assert page.errors == []


def test_a_copied_job_from_an_older_trainer_leaves_out_the_setting_it_no_longer_has(studio, page):
    from playwright.sync_api import expect

    old, _ = studio.store().create("train", name="from last month", dataset="my-cat", recipe="zimage-turbo",
                                   config={"name": "old-cat", "steps": 77, "retired_knob": 3})
    _open_form(page, studio.trainer + f"/new?from={old.id}", "old-cat-2")
    expect(page.locator(".toast", has_text="retired_knob")).to_contain_text("no longer has, left out")
    expect(page.locator("#f-steps")).to_have_value("77")  # the rest is copied
    expect(page.locator("#start")).to_be_enabled()
    expect(page.locator("#problems")).not_to_contain_text("retired_knob")
    assert "retired_knob" not in page.locator("#config-text").input_value()
    assert page.errors == []


def test_a_number_the_browser_cannot_read_is_named_not_taken_as_automatic(studio, page):
    from playwright.sync_api import expect

    _open_form(page, studio.trainer + "/new?dataset=my-cat")
    page.locator("#advanced summary").click()
    page.locator("#f-alpha").click()
    page.keyboard.type("1e")  # half of 1e-4, or a typo: the input's value is "" while it shows "1e"
    expect(page.locator("#err-alpha")).to_have_text("Must be a number.")
    expect(page.locator("#start")).to_be_disabled()
    page.keyboard.type("1")  # 1e1: a number again
    expect(page.locator("#err-alpha")).to_have_text("")
    assert '"alpha": 10' in page.locator("#config-text").input_value()
    page.fill("#f-alpha", "")  # emptied on purpose: automatic (alpha = rank), as the placeholder says
    expect(page.locator("#start")).to_be_enabled()
    assert '"alpha": null' in page.locator("#config-text").input_value()
    assert page.errors == []


def test_a_check_refused_for_its_size_is_said_once_not_retried_forever(studio, page):
    from playwright.sync_api import expect

    _open_form(page, studio.trainer + "/new?dataset=my-cat")
    checks = []
    page.on("request", lambda request: checks.append(1) if "/api/jobs/validate" in request.url else None)
    # a job name of 5 MB (pasted by mistake): every check of it is over the request limit (413)
    page.evaluate("""() => { const f = document.querySelector('#f-job-name'); f.removeAttribute('maxlength');
                             f.value = 'x'.repeat(5 * 1024 * 1024);
                             f.dispatchEvent(new Event('input', {bubbles: true}));
                             f.dispatchEvent(new Event('change', {bubbles: true})); }""")
    expect(page.locator("#check-refused")).to_contain_text("larger than")
    expect(page.locator("#start")).to_be_disabled()
    sent = len(checks)
    page.wait_for_timeout(6000)  # a retry came every 5 s, each refused the same way
    assert len(checks) == sent
    expect(page.locator("#check-unreached")).to_have_count(0)
    page.fill("#f-job-name", "my cat")  # fixed: checked again, and Start comes back
    expect(page.locator("#check-refused")).to_have_count(0)
    expect(page.locator("#start")).to_be_enabled()
    assert page.errors == []
