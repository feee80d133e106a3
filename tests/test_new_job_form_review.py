"""The new job form as a user on a rented GPU meets it, in chromium against real servers: filling it in does not
fill the console with failed requests, a filled form survives Back and a reload (and is not offered again once its
job is started), and a trainer that does not answer (a restart, the proxy's 502 or 524) neither blocks Start nor
leaves the user guessing whether the job was queued."""

from __future__ import annotations

import re

import pytest
import requests

from tests import browser_studio
from tests.browser_studio import ARGS, BEARER, CHROMIUM, DESKTOP, VIEWPORTS, browser_marks, login

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)
PRIVATE_HOOK = "http://127.0.0.1:9/hooks/training"


@pytest.fixture
def browser_page(studio, viewport):
    """(page, console errors, page errors): chromium logged in to the studio."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(20_000)
        console, errors = [], []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        login(page, studio.datasets)
        yield page, console, errors
        browser.close()


def _fill_invalid(page, trainer: str):
    from playwright.sync_api import expect

    page.goto(trainer + "/new?dataset=my-cat")
    expect(page.locator("#f-name")).to_have_value("my-cat-2")
    page.fill("#f-steps", "-5")
    expect(page.locator("#err-steps")).to_contain_text("at least 1")
    page.locator("#advanced summary").click()
    page.fill("#f-webhook", PRIVATE_HOOK)
    # the server's refusal of a private address, next to the field and in the list
    expect(page.locator("#err-webhook_url")).to_contain_text("private or local address")
    expect(page.locator("#problems")).to_contain_text("Webhook URL")
    expect(page.locator("#start")).to_be_disabled()
    page.fill("#f-steps", "12")
    expect(page.locator("#err-steps")).to_have_text("")
    expect(page.locator("#err-webhook_url")).to_contain_text("private or local address")
    page.fill("#f-webhook", "")
    expect(page.locator("#err-webhook_url")).to_have_text("")
    expect(page.locator("#start")).to_be_enabled()


@pytest.mark.parametrize("viewport", [DESKTOP])
def test_the_trainer_answers_the_live_check_without_a_failed_request(studio, browser_page, viewport):
    body = {"dataset": "my-cat", "config": {"steps": -5}}
    answer = requests.post(studio.trainer + "/api/jobs/validate?report=1", json=body, headers=BEARER, timeout=30)
    assert answer.status_code == 200 and answer.json()["ok"] is False
    plain = requests.post(studio.trainer + "/api/jobs/validate", json=body, headers=BEARER, timeout=30)
    assert plain.status_code == 422  # API clients keep theirs
    page, console, errors = browser_page
    _fill_invalid(page, studio.trainer)
    assert errors == [] and console == []


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_filled_form_survives_back_and_reload_until_its_job_starts(studio, browser_page, viewport):
    from playwright.sync_api import expect

    page, _console, errors = browser_page
    url = studio.trainer + "/new?dataset=my-cat"
    page.goto(url)
    expect(page.locator("#f-name")).to_have_value(re.compile(r"^my-cat-\d$"))  # a free name, once the form is built
    page.fill("#f-steps", "123")
    page.fill("#f-job-name", "kept through back")
    page.fill("#f-sample_prompts", "mycat on a red sofa\nmycat in the snow")
    page.locator("[data-add='dog-set']").click()
    expect(page.locator("#mix")).to_be_visible()
    page.locator("[data-repeats='dog-set']").fill("3")
    page.wait_for_timeout(100)  # the page keeps the draft as it changes (no server answer to wait for)

    def kept():
        expect(page.locator("#f-steps")).to_have_value("123")
        expect(page.locator("#f-job-name")).to_have_value("kept through back")
        expect(page.locator("#f-sample_prompts")).to_have_value("mycat on a red sofa\nmycat in the snow")
        expect(page.locator("[data-repeats='dog-set']")).to_have_value("3")
        expect(page.locator(".dataset-card.selected")).to_have_count(2)
        assert '"steps": 123' in page.locator("#config-text").input_value()

    page.goto(studio.trainer + "/library")
    page.go_back()
    kept()
    expect(page.locator(".toast", has_text="Your settings are back")).to_be_visible()
    page.reload()
    kept()

    # opened again from a link: offered, not forced
    page.goto(studio.trainer + "/library")
    page.goto(url)
    expect(page.locator("#f-steps")).not_to_have_value("123")
    page.locator(".toast", has_text="did not start").get_by_role("button", name="Bring them back").click()
    kept()

    page.click("#start")
    page.wait_for_url("**/jobs/**")
    page.go_back()
    expect(page.locator("#f-name")).to_be_visible()
    page.wait_for_timeout(500)  # a restore would happen as the form is built
    expect(page.locator("#f-steps")).not_to_have_value("123")
    expect(page.locator("#f-job-name")).to_have_value("")
    expect(page.locator(".toast", has_text="Your settings are back")).to_have_count(0)
    assert errors == []


@pytest.mark.parametrize("viewport", [DESKTOP])
def test_a_trainer_that_does_not_answer_blocks_nothing_and_queues_nothing_twice(studio, browser_page, viewport):
    from playwright.sync_api import expect

    page, _console, errors = browser_page
    page.route("**/api/jobs/validate*", lambda route: route.abort("connectionreset"))
    page.goto(studio.trainer + "/new?dataset=my-cat")
    expect(page.locator("#check-unreached")).to_contain_text("Could not check these settings")
    expect(page.locator("#start")).to_be_enabled()
    page.unroute("**/api/jobs/validate*")
    expect(page.locator("#check-unreached")).to_have_count(0, timeout=15_000)  # tried again on its own
    expect(page.locator("#est-images")).to_have_text("7")

    # the job is queued, but the proxy loses the answer (Cloudflare's 524 page)
    def lost(route):
        route.fetch()
        route.fulfill(status=524, content_type="text/html", body="<!DOCTYPE html><title>524: A timeout</title>")

    page.fill("#f-job-name", "answer lost")
    page.route("**/api/jobs", lost)
    page.click("#start")
    expect(page.locator(".toast")).to_contain_text("may or may not be queued. Press Start again")
    expect(page.locator(".toast")).not_to_contain_text("JSON")
    expect(page.locator("#start")).to_be_enabled()
    page.unroute("**/api/jobs")
    page.click("#start")
    page.wait_for_url("**/jobs/*?again=1")
    jobs = requests.get(studio.trainer + "/api/jobs", headers=BEARER, timeout=30).json()["jobs"]
    assert [job["name"] for job in jobs].count("answer lost") == 1

    # the variants say the same
    page.goto(studio.trainer + "/new?dataset=dog-set")
    page.locator("#variants summary").click()
    page.route("**/api/jobs/variants", lambda route: route.fulfill(status=502, content_type="text/html",
                                                                   body="<html>Bad gateway</html>"))
    page.click("#vary-start")
    expect(page.locator("#vary-note")).to_contain_text("may or may not be queued")
    expect(page.locator("#vary-start")).to_be_enabled()
    assert errors == []
