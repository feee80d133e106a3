"""The caption editor over a slow connection (the RunPod proxy under load): typing on while a save is on its way
queues several autosaves behind it. They go one after the other, each with the version the one before produced;
before, all of them went at once with the same version and the user's own text came back as "changed elsewhere"."""

from __future__ import annotations

import pytest
import requests

from tests import browser_studio
from tests.browser_studio import BEARER, browser_marks, open_page

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
        browser, page, problems = open_page(p)
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


def test_a_caption_of_an_image_deleted_meanwhile_is_said_and_leaves_no_draft_behind(studio):
    """The image was deleted in another tab while its caption was typed: its save got a 404 and became a draft that
    could never be settled, so every leaving of the page asked first, for an image that was gone."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_datasets_support import image_bytes

    api = f"{studio.datasets}/api/datasets/{studio.dataset_id}"
    sent = requests.post(f"{api}/upload?wait=20", headers=BEARER, timeout=60,
                         files=[("files", ("soon-gone.png", image_bytes(77), "image/png"))])
    assert sent.status_code in (200, 202), sent.text
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        browser_studio.login(page, studio.datasets)
        page.goto(f"{studio.datasets}/d/{studio.dataset_id}")
        page.locator('.tile[data-name="soon-gone.png"]').click()
        page.locator("#caption").fill("a grey cat, typed while another tab deleted the picture")
        assert requests.delete(f"{api}/images/soon-gone.png", headers=BEARER, timeout=10).status_code in (200, 204)
        page.locator("#caption").blur()
        expect(page.locator(".toast", has_text="“soon-gone.png” was deleted meanwhile")).to_be_visible()
        asked = page.evaluate("""() => { const ev = new Event('beforeunload', { cancelable: true });
                                         window.dispatchEvent(ev); return ev.defaultPrevented; }""")
        assert asked is False
        assert page.evaluate("Object.keys(sessionStorage).filter((k) => k.startsWith('caption-drafts:')).length") == 0
        assert [problem for problem in problems if "/captions/soon-gone.png" not in problem] == []
        browser.close()
