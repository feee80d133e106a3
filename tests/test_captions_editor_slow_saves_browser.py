"""The caption editor over a slow connection (the RunPod proxy under load): typing on while a save is on its way
queues several autosaves behind it. They go one after the other, each with the version the one before produced;
before, all of them went at once with the same version and the user's own text came back as "changed elsewhere"."""

from __future__ import annotations

import pytest
import requests

from tests import browser_studio
from tests.browser_studio import ARGS, BEARER, CHROMIUM, DESKTOP, browser_marks, watch_page

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)

# Every answer to a caption save comes 2.5 s late (the save itself reaches the server at once).
SLOW_SAVES = """
const realFetch = window.fetch;
window.fetch = (url, options) => {
  const answer = realFetch(url, options);
  if (!(options && options.method === "PUT" && String(url).includes("/captions/"))) return answer;
  return answer.then((response) => new Promise((resolve) => setTimeout(() => resolve(response), 2500)));
};
"""


@pytest.fixture
def slow_page(studio):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(20_000)
        problems = watch_page(page)
        browser_studio.login(page, studio.datasets)
        page.add_init_script(SLOW_SAVES)
        yield page
        browser.close()
    assert problems == []


def _caption(studio, name: str) -> str:
    rows = requests.get(f"{studio.datasets}/api/datasets/{studio.dataset_id}/images?limit=100", headers=BEARER,
                        timeout=10).json()["images"]
    return next(row["caption"] for row in rows if row["name"] == name)


def test_typing_on_while_saves_are_slow_never_conflicts_with_itself(studio, slow_page):
    from playwright.sync_api import expect

    page = slow_page
    page.goto(f"{studio.datasets}/d/{studio.dataset_id}")
    page.locator('.tile[data-name="cat3.png"]').click()
    page.locator("#caption").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    for word in ["a ", "grey ", "cat ", "asleep"]:  # an autosave 0.9 s after each word; each answer takes 2.5 s
        page.keyboard.type(word)
        page.wait_for_timeout(1200)
    expect(page.locator("#save-state")).to_have_text("Saved ✓", timeout=30_000)
    expect(page.locator("#ed-conflict")).to_be_hidden()
    assert _caption(studio, "cat3.png") == "a grey cat asleep"
    page.wait_for_timeout(3000)  # nothing still on its way turns into a conflict
    expect(page.locator("#ed-conflict")).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved ✓")


def test_leaving_while_a_save_is_on_its_way_asks_first(studio, slow_page):
    from playwright.sync_api import expect

    page = slow_page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
    page.goto(f"{studio.datasets}/d/{studio.dataset_id}")
    page.locator('.tile[data-name="cat4.png"]').click()
    page.locator("#caption").fill("a cat on the stairs")
    page.locator("#search").click()  # the caption box loses focus: its save goes, its answer takes 2.5 s
    expect(page.locator("#save-state")).to_have_text("Saving…")
    page.goto(f"{studio.datasets}/")
    assert dialogs == ["beforeunload"]  # the browser asked before leaving a save it might cut off
