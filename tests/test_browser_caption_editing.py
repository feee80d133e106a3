"""The caption editor in a real browser when a save does not go through: a conflict with another tab is settled
for its own image, never the one open by then; a conflict left unsettled, a caption over the limit and a lost
login keep the typed text as a draft of its image; an auto-caption run writes its captions in place, without
moving the grid or touching the text being typed."""

from __future__ import annotations

import re

import pytest
import requests

from app.captions import CAPTION_MAX
from tests import browser_studio
from tests.browser_studio import ARGS, CHROMIUM, DESKTOP, PASSWORD, browser_marks, watch_page
from tests.helpers import ServerProcess
from tests.test_datasets_autocaption import StandIn
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)


@pytest.fixture
def tabs(studio):
    """open_tab(image): a logged-in tab of "My cat" with `image` open in the editor; all tabs share one login."""
    from playwright.sync_api import expect, sync_playwright

    watched: list[list[str]] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(20_000)
        browser_studio.login(context.new_page(), studio.datasets)

        def open_tab(image: str):
            page = context.new_page()
            watched.append(watch_page(page))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))  # "leave the page?"
            page.goto(f"{studio.datasets}/d/{studio.dataset_id}")
            page.locator(f'.tile[data-name="{image}"]').click()
            expect(page.locator("#ed-name")).to_have_text(image)
            return page

        open_tab.context = context
        open_tab.dialogs = dialogs
        yield open_tab
        browser.close()
    assert [problem for problems in watched for problem in problems] == []


def _set_captions(studio, captions: dict[str, str]) -> None:
    for name, text in captions.items():
        studio.api(studio.datasets, f"/api/datasets/{studio.dataset_id}/captions/{name}", {"caption": text}, "PUT")


def _captions(studio) -> dict[str, str]:
    rows = studio.api(studio.datasets, f"/api/datasets/{studio.dataset_id}/images?limit=100")["images"]
    return {row["name"]: row["caption"] for row in rows}


def test_keep_mine_saves_to_the_image_the_conflict_is_about(studio, tabs):
    from playwright.sync_api import expect

    _set_captions(studio, {"cat0.png": "a cat", "cat1.png": "the next cat"})
    a, b = tabs("cat0.png"), tabs("cat0.png")
    a.fill("#caption", "written in tab A")
    expect(a.locator("#save-state")).to_have_text("Saved ✓")
    # tab B types over the old text and moves on at once: its save meets tab A's
    b.fill("#caption", "typed in tab B")
    b.keyboard.press("Alt+ArrowRight")
    expect(b.locator("#ed-name")).to_have_text("cat1.png")
    expect(b.locator("#ed-conflict")).to_be_hidden()  # no choice offered on an image it is not about
    expect(b.locator(".toast", has_text="“cat0.png” is not saved: it was changed elsewhere")).to_be_visible()
    expect(b.locator("#caption")).to_have_value("the next cat")
    assert _captions(studio)["cat1.png"] == "the next cat"
    # the note takes B back to the image; Keep mine writes B's text there, over tab A's, and nowhere else
    b.locator(".toast-action", has_text="Open").click()
    expect(b.locator("#ed-name")).to_have_text("cat0.png")
    expect(b.locator("#caption")).to_have_value("typed in tab B")
    expect(b.locator("#ed-conflict")).to_contain_text("Current: “written in tab A”")
    b.click("#keep-mine")
    expect(b.locator("#save-state")).to_have_text("Saved ✓")
    expect(b.locator("#ed-conflict")).to_be_hidden()
    captions = _captions(studio)
    assert (captions["cat0.png"], captions["cat1.png"]) == ("typed in tab B", "the next cat")
    b.click("#ed-next")  # the next image shows its own caption
    expect(b.locator("#caption")).to_have_value("the next cat")


def test_an_unsettled_conflict_keeps_the_typed_text(studio, tabs):
    from playwright.sync_api import expect

    _set_captions(studio, {"cat2.png": "a cat", "cat3.png": "the third cat"})
    a, b = tabs("cat2.png"), tabs("cat2.png")
    a.fill("#caption", "tab A's caption")
    expect(a.locator("#save-state")).to_have_text("Saved ✓")
    b.fill("#caption", "tab B's words")
    expect(b.locator("#save-state")).to_have_text("Conflict")
    expect(b.locator("#ed-conflict")).to_contain_text("Current: “tab A's caption”")
    # away and back without choosing: the text and the choice are still there
    b.click("#ed-next")
    expect(b.locator("#caption")).to_have_value("the third cat")
    expect(b.locator("#ed-conflict")).to_be_hidden()
    b.click("#ed-prev")
    expect(b.locator("#caption")).to_have_value("tab B's words")
    expect(b.locator("#ed-conflict")).to_contain_text("Current: “tab A's caption”")
    # a reload of the tab keeps them too, after the browser asked whether to leave
    b.reload()
    assert tabs.dialogs == ["beforeunload"]
    b.locator('.tile[data-name="cat2.png"]').click()
    expect(b.locator("#caption")).to_have_value("tab B's words")
    expect(b.locator("#ed-conflict")).to_contain_text("Current: “tab A's caption”")
    assert _captions(studio)["cat2.png"] == "tab A's caption"
    # Use current: the server's text, and nothing of B's comes back later
    b.click("#take-theirs")
    expect(b.locator("#caption")).to_have_value("tab A's caption")
    expect(b.locator("#ed-conflict")).to_be_hidden()
    b.click("#ed-next")
    b.click("#ed-prev")
    expect(b.locator("#caption")).to_have_value("tab A's caption")
    assert _captions(studio)["cat2.png"] == "tab A's caption"


def test_a_caption_over_the_limit_is_kept_when_it_cannot_be_saved(studio, tabs):
    from playwright.sync_api import expect

    _set_captions(studio, {"cat4.png": "a cat"})
    page = tabs("cat4.png")
    box = page.locator("#caption")
    assert box.evaluate("(el) => el.maxLength") == CAPTION_MAX  # the box takes no more than the server does
    # text that got past the limit anyway (the box of an older page): the save fails and says why
    box.evaluate("(el) => el.removeAttribute('maxlength')")
    long_text = "a very long caption " * (CAPTION_MAX // 20) + "and the end"
    box.fill(long_text)
    expect(page.locator("#save-state")).to_have_text(re.compile(r"^Not saved: The caption is too long"))
    expect(page.locator("#ed-count")).to_contain_text(f"{len(long_text):,} of {CAPTION_MAX:,} characters")
    page.click("#ed-next")
    page.click("#ed-prev")
    expect(box).to_have_value(long_text)
    expect(page.locator("#save-state")).to_have_text(re.compile(r"^Not saved: The caption is too long"))
    box.fill(long_text[:200])
    expect(page.locator("#save-state")).to_have_text("Saved ✓")
    assert _captions(studio)["cat4.png"] == long_text[:200].strip()
    # a paste longer than the box takes: what was left out is said
    box.evaluate("""(el) => { const dt = new DataTransfer(); dt.setData("text/plain", "x".repeat(9900));
      el.setSelectionRange(0, 0);
      el.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true })); }""")
    expect(page.locator(".toast", has_text="the last 100 of what you pasted were left out")).to_be_visible()


def test_a_lost_login_keeps_the_text_and_links_to_the_login(studio, tabs):
    from playwright.sync_api import expect

    _set_captions(studio, {"cat5.png": "a cat"})
    page = tabs("cat5.png")
    tabs.context.clear_cookies()  # logged out, as by another tab or a changed password
    page.fill("#caption", "typed while logged out")
    expect(page.locator("#save-state")).to_have_text("Not saved: logged out")
    note = page.locator("#ed-conflict")
    expect(note).to_contain_text("You are logged out")
    expect(note).not_to_contain_text("Bearer")
    link = page.locator("#relogin")
    expect(link).to_have_attribute("href", f"/login?next=%2Fd%2F{studio.dataset_id}")
    page.click("#ed-next")
    page.click("#ed-prev")
    expect(page.locator("#caption")).to_have_value("typed while logged out")
    expect(link).to_be_visible()
    # another image typed on and left at once: its answer comes while the next one shows, so a toast says it
    page.click("#ed-next")
    left = page.locator("#ed-name").text_content()
    page.fill("#caption", "typed on the next image while logged out")
    page.keyboard.press("Alt+ArrowRight")
    lost = page.locator(".toast", has_text="is not saved: you are logged out")
    expect(lost.filter(has_text=f"“{left}”")).to_have_count(1)  # once, however often it was tried
    page.locator(".tile[data-name='cat5.png']").click()
    expect(link).to_be_visible()
    # logging in again in the tab the link opens; back on the editor's tab the text is saved
    with tabs.context.expect_page() as opened:
        link.click()
    login_tab = opened.value
    login_tab.fill("#password", PASSWORD)
    login_tab.click("button[type=submit]")
    login_tab.wait_for_url(f"{studio.datasets}/d/{studio.dataset_id}")
    login_tab.close()
    page.bring_to_front()
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # what a browser sends there (headless sends none)
    expect(page.locator("#save-state")).to_have_text("Saved ✓")
    expect(note).to_be_hidden()
    expect(lost).to_have_count(0)  # saved since: the toast takes its words back
    assert _captions(studio)["cat5.png"] == "typed while logged out"
    assert _captions(studio)[left] == "typed on the next image while logged out"


def test_an_auto_caption_run_leaves_the_grid_and_the_typing_alone(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    stand_in = StandIn()
    stand_in.delay = 0.15
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": stand_in.url}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Many"}, timeout=10).json()["id"]
        files = [("files", (f"img {i:02d}.png", image_bytes(i, size=(96, 72)), "image/png")) for i in range(48)]
        requests.post(f"{server.url}/api/datasets/{dataset_id}/upload?wait=30", files=files,
                      timeout=60).raise_for_status()
        requests.put(f"{server.url}/api/datasets/{dataset_id}/captions/img 30.png",
                     json={"caption": "a seeded caption"}, timeout=10).raise_for_status()  # the run leaves it be

        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=DESKTOP)
        problems = watch_page(page)
        page.set_default_timeout(20_000)
        page.goto(f"{server.url}/d/{dataset_id}")
        current = page.locator('.tile[data-name="img 30.png"]')
        current.scroll_into_view_if_needed()
        current.click()
        expect(page.locator("#caption")).to_have_value("a seeded caption")
        page.click("#btn-autocaption")
        expect(page.locator("#svc-status")).to_contain_text("Caption service ready")
        page.select_option("#cap-mode", "skip")
        page.click("#cap-start")
        expect(page.locator("#cap-cancel")).to_be_visible()
        page.click("#caption-dialog [data-close]")
        page.click("#btn-select")  # two images picked while it runs
        for name in ("img 28.png", "img 29.png"):
            page.locator(f'.tile[data-name="{name}"]').click()
        assert page.evaluate("window.scrollY") > 0
        # where the image sits on the screen (the run's banner comes and goes above the grid: the browser keeps
        # the grid in place, so this, not scrollY, is what must not move)
        top = current.bounding_box()["y"]

        refreshed: list[str] = []
        page.on("request", lambda request: "/images?" in request.url and refreshed.append(request.url))
        typed = "a seeded caption"
        page.click("#caption")
        page.keyboard.press("End")
        for word in range(200):  # typing on, in bursts, until the run is over
            chunk = f" word{word}"
            page.keyboard.type(chunk, delay=25)
            typed += chunk
            if word % 8 == 7:
                page.wait_for_timeout(1000)  # a pause: the autosave goes, the box stays in use
            if page.locator("#autocaption-label").text_content() == "Auto-caption" and len(refreshed) >= 2:
                break
        expect(page.locator("#count-uncaptioned")).to_have_text("0")
        assert len(refreshed) >= 2, "the run refreshed the grid while the caption was typed"
        expect(page.locator("#caption")).to_have_value(typed)  # not a keystroke lost
        assert abs(current.bounding_box()["y"] - top) < 2, "the grid stayed where it was"
        expect(page.locator(".tile")).to_have_count(48)
        expect(page.locator(".tile.current")).to_have_attribute("data-name", "img 30.png")
        expect(page.locator(".tile.selected")).to_have_count(2)
        expect(page.locator('.tile[data-name="img 00.png"] .cap')).to_have_text(re.compile(r"^96px "))
        page.locator("#caption").blur()
        expect(page.locator("#save-state")).to_have_text("Saved ✓")
        rows = requests.get(f"{server.url}/api/datasets/{dataset_id}/images?q=img 30", timeout=10).json()["images"]
        assert rows[0]["caption"] == typed
        browser.close()
        assert problems == []


def test_a_caption_run_that_failed_stays_said_with_a_button_for_the_rest(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from studio.jobs import JobStore

    stand_in = StandIn()
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": stand_in.url}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Few"}, timeout=10).json()["id"]
        files = [("files", (f"img{i}.png", image_bytes(i, size=(96 + 16 * i, 72)), "image/png")) for i in range(3)]
        requests.post(f"{server.url}/api/datasets/{dataset_id}/upload?wait=30", files=files,
                      timeout=60).raise_for_status()
        store = JobStore(studio_root / "studio.db")  # a run the caption service died under, in another tab
        run, _ = store.create("caption", name="captions", dataset=dataset_id, total=3,
                              config={"mode": "skip", "style": "short", "prompt": "", "max_tokens": 120})
        store.start(run.id, None)
        store.finish(run.id, "failed", error="The caption service stopped answering.")

        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=DESKTOP)
        problems = watch_page(page)
        page.set_default_timeout(20_000)
        page.goto(f"{server.url}/d/{dataset_id}")
        banner = page.locator("#job-banner")
        expect(banner).to_contain_text("Auto-caption stopped at 0 of 3: The caption service stopped answering.")
        banner.locator("#banner-dismiss").click()  # seen: gone, also after a reload
        expect(banner).to_be_empty()
        page.reload()
        expect(page.locator("#count-uncaptioned")).to_have_text("3")
        expect(banner).to_be_empty()
        page.evaluate("sessionStorage.clear()")
        page.reload()
        banner.locator("#banner-rest", has_text="Caption the 3 images left").click()  # its style, on the rest
        expect(page.locator("#count-uncaptioned")).to_have_text("0")
        expect(banner).to_be_empty()
        # a run started elsewhere (the API, another tab) shows here too
        stand_in.delay = 5  # three images: longer than the page's look every 10 s
        requests.post(f"{server.url}/api/datasets/{dataset_id}/caption", json={"mode": "overwrite"},
                      timeout=10).raise_for_status()
        expect(banner).to_contain_text("Auto-captioning:", timeout=30_000)
        expect(banner).to_be_empty(timeout=30_000)
        # one on some images started and ended elsewhere between two looks: said too, its button the dialog's
        chosen, _ = store.create("caption", name="captions", dataset=dataset_id, total=2,
                                 config={"mode": "skip", "style": "short", "prompt": "", "chosen": True})
        store.start(chosen.id, None)
        store.finish(chosen.id, "interrupted", message="The studio restarted.")
        expect(banner).to_contain_text("Auto-caption was cut off at 0 of 2: The studio restarted.", timeout=30_000)
        expect(banner.locator("#banner-open")).to_have_text("Auto-caption…")
        browser.close()
        assert problems == []
    stand_in.close()
