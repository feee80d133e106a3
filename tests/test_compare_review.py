"""The compare page as a user meets it, in chromium against real servers: a preview that does not load (the proxy
dropped it, its file is gone) is asked for again, then says so in its slot with a button to try again, instead of a
broken-image icon in a row read across for differences."""

from __future__ import annotations

import json

import pytest

from tests import browser_studio
from tests.browser_studio import ARGS, CHROMIUM, DESKTOP, browser_marks, login, watch_page
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)
PNG = image_bytes(3, size=(64, 64))


def _listing(job_id: str) -> dict:
    """A run's previews as GET /api/jobs/<id>/samples lists them: one step, one prompt, its base and its LoRA."""
    pair = {"prompt": "mycat on a sofa", "base": "/previews/base.png", "base_key": "same",
            "lora": f"/previews/{job_id}.png"}
    return {"samples": [{"step": 10, "base_only": False, "pairs": [pair]}], "leak": None}


@pytest.mark.parametrize("viewport", [DESKTOP])
def test_a_preview_that_does_not_load_says_so_and_tries_again(studio, viewport):
    from playwright.sync_api import expect, sync_playwright

    other = studio.api(studio.trainer, "/api/jobs", {"name": "second try", "dataset": "my-cat",
                                                     "config": {"name": "my-cat-b", "steps": 10}})["job"]["id"]
    first = studio.job_id
    asked: dict[str, int] = {}
    broken = {"on": True}

    def samples(route):
        job_id = route.request.url.split("/api/jobs/")[1].split("/")[0]
        route.fulfill(content_type="application/json", body=json.dumps(_listing(job_id)))

    def picture(route):
        name = route.request.url.split("/previews/")[1].split("?")[0]
        asked[name] = asked.get(name, 0) + 1
        if name == f"{other}.png" and broken["on"]:
            route.abort("connectionreset")  # the proxy dropped it
        elif name == f"{first}.png" and asked[name] == 1:
            route.abort("connectionreset")  # once only
        else:
            route.fulfill(content_type="image/png", body=PNG)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(20_000)
        problems = watch_page(page)
        login(page, studio.datasets)
        page.route("**/api/jobs/*/samples", samples)
        page.route("**/previews/**", picture)
        page.goto(f"{studio.trainer}/compare?jobs={first},{other}")
        row = page.locator(".compare-prompt")
        captions = ["Base (LoRA off)", "first try · step 10", "second try · step 10"]
        expect(row.locator("figcaption")).to_have_text(captions)
        # asked again once on its own: the one dropped once shows
        page.wait_for_function("[...document.querySelectorAll('.compare-prompt img')].length === 2 && "
                               "[...document.querySelectorAll('.compare-prompt img')].every(i => i.naturalWidth > 0)")
        assert asked[f"{first}.png"] == 2
        # the one that keeps failing says so in its slot, beside its caption
        failed = row.locator("figure", has_text="second try").locator(".img-failed")
        expect(failed).to_have_text("This picture did not load. Try again")
        assert asked[f"{other}.png"] == 2
        broken["on"] = False
        failed.click()
        expect(row.locator("figure", has_text="second try").locator(".img-failed")).to_have_count(0)
        page.wait_for_function("[...document.querySelectorAll('.compare-prompt img')].length === 3 && "
                               "[...document.querySelectorAll('.compare-prompt img')].every(i => i.naturalWidth > 0)")
        # and it opens full size as any preview does
        row.locator("figure", has_text="second try").locator("img").click()
        expect(page.locator(".lightbox img")).to_have_attribute("src", f"/previews/{other}.png")
        assert problems == []
        browser.close()
