"""The dataset page and the trainer's forms with the keyboard alone and as a screen reader hears them: the trigger word
and the dataset's name open with Tab and Enter and give the keyboard back when their dialog closes; Enter on the grid
goes to the open image's caption (in its sheet on a phone) and closing the sheet goes back to the grid, never to the
page's start; browsing and saving are said (live regions); which filter and which dataset are picked is said too;
the arrow buttons, the loss chart's slider and the uploads panel's × have names."""

from __future__ import annotations

import re

import pytest

from tests import browser_studio
from tests.browser_studio import DESKTOP, PHONE, browser_marks, login, open_page

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)

FOCUSED = "() => document.activeElement.id || document.activeElement.tagName"


@pytest.fixture
def dataset_page(studio):
    """open(viewport): a logged-in page on "My cat", its first image open; script errors and failed calls checked."""
    from playwright.sync_api import expect, sync_playwright

    opened = []
    with sync_playwright() as p:
        def open_(viewport=DESKTOP):
            browser, page, problems = open_page(p, viewport)
            opened.append((browser, problems))
            login(page, studio.datasets)
            page.goto(f"{studio.datasets}/d/{studio.dataset_id}")
            expect(page.locator("#ed-name")).to_have_text("cat0.png")
            return page

        yield open_
        for browser, _ in opened:
            browser.close()
    assert [problem for _, problems in opened for problem in problems] == []


def tab_to(page, element_id: str, most: int = 40) -> None:
    """Presses Tab until `element_id` has the focus (it must be reachable so)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUSED) == element_id:
            return
    raise AssertionError(f"#{element_id} is not reached with Tab")


def test_trigger_word_and_name_open_with_the_keyboard(studio, dataset_page):
    from playwright.sync_api import expect

    page = dataset_page()
    page.locator(".ds-head a").first.focus()  # "← Datasets", the header's first stop
    tab_to(page, "ds-name", 3)
    page.keyboard.press("Enter")
    expect(page.locator("#rename-dialog")).to_be_visible()
    expect(page.locator("#rename-input")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#rename-dialog")).to_be_hidden()
    expect(page.locator("#ds-name")).to_be_focused()
    expect(page.locator("#ds-name")).to_have_accessible_name("My cat")

    tab_to(page, "trigger-chip", 3)
    expect(page.locator("#trigger-chip")).to_have_accessible_name("mycat")
    expect(page.locator("#trigger-chip")).to_have_accessible_description(re.compile("^Trigger word"))
    page.keyboard.press("Enter")
    expect(page.locator("#trigger-input")).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.type("mycat2")
    page.keyboard.press("Enter")
    expect(page.locator("#trigger-dialog")).to_be_hidden()
    expect(page.locator("#trigger-chip")).to_have_text("mycat2")
    expect(page.locator("#trigger-chip")).to_be_focused()
    assert studio.api(studio.datasets, f"/api/datasets/{studio.dataset_id}")["trigger_word"] == "mycat2"
    studio.api(studio.datasets, f"/api/datasets/{studio.dataset_id}", {"trigger_word": "mycat"}, "PATCH")


def test_browsing_and_saving_captions_are_said(studio, dataset_page):
    from playwright.sync_api import expect

    page = dataset_page()
    page.locator("#grid").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#ed-name")).to_have_text("cat1.png")
    # the image now open is said as the arrows move (the grid's tiles take no focus of their own)
    live = page.evaluate("() => (document.getElementById('ed-name').closest('[aria-live]') || {}).ariaLive")
    assert live == "polite"
    expect(page.locator("#ed-prev")).to_have_accessible_name("Previous image")  # not "left arrow"
    expect(page.locator("#ed-next")).to_have_accessible_name("Next image")

    page.keyboard.press("Enter")  # to the caption of the open image
    expect(page.locator("#caption")).to_be_focused()
    page.keyboard.type(" by the window")
    saved = page.get_by_role("status").filter(has_text=re.compile("^Saved ✓$"))
    expect(saved).to_have_count(1)  # the autosave's answer is said, without a toast
    expect(page.locator("#caption")).to_be_focused()
    rows = studio.api(studio.datasets, f"/api/datasets/{studio.dataset_id}/images?limit=100")["images"]
    assert [row["caption"] for row in rows if row["name"] == "cat1.png"] == ["by the window"]


def test_the_phone_sheet_opens_and_closes_with_the_keyboard(dataset_page):
    from playwright.sync_api import expect

    page = dataset_page(PHONE)
    grid = page.locator("#grid")
    grid.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(page.locator("body")).to_have_class(re.compile("editor-open"))
    expect(page.locator("#caption")).to_be_focused()
    expect(page.locator("#ed-name")).to_have_text("cat1.png")
    page.keyboard.press("Escape")
    expect(page.locator("body")).not_to_have_class(re.compile("editor-open"))
    expect(grid).to_be_focused()  # not the page's start: the next arrow goes on from here

    page.keyboard.press("Enter")
    page.locator("#ed-close").focus()
    page.keyboard.press("Enter")  # "← Back to the gallery"
    expect(page.locator("body")).not_to_have_class(re.compile("editor-open"))
    expect(grid).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#ed-name")).to_have_text("cat2.png")


def test_picked_filter_and_dataset_are_said(studio, dataset_page):
    from playwright.sync_api import expect

    page = dataset_page()
    page.locator('#filters button[data-filter="flagged"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator('#filters button[data-filter="flagged"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator('#filters button[data-filter="all"]')).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#uploads-close")).to_have_attribute("aria-label", "Close")  # the panel shows on an upload

    page.goto(f"{studio.trainer}/new")
    card = page.locator('.dataset-card[data-dataset="dog-set"]')
    card.focus()
    page.keyboard.press("Space")
    expect(card).to_have_attribute("aria-pressed", "true")
    expect(page.locator('.dataset-card[data-dataset="my-cat"]')).to_have_attribute("aria-pressed", "false")

    page.goto(f"{studio.trainer}/jobs/{studio.job_id}")
    expect(page.get_by_role("slider", name="Smoothing")).to_be_visible()


def test_the_finished_uploads_line_opens_with_the_keyboard(dataset_page, tmp_path):
    """The finished uploads panel shrinks to one line after a few seconds: that line opened the details with a click
    only, and how the upload ended was not said."""
    from playwright.sync_api import expect

    from tests.test_datasets_support import image_bytes

    page = dataset_page()
    photo = tmp_path / "keyboard upload.png"
    photo.write_bytes(image_bytes(5, size=(300, 300)))
    page.set_input_files("#file-input", str(photo))
    title = page.locator("#uploads-title")
    assert title.get_attribute("aria-live") == "polite"
    expect(page.locator("#uploads")).to_have_class(re.compile(r"\bcompact\b"), timeout=15_000)
    assert (title.get_attribute("role"), title.get_attribute("tabindex")) == ("button", "0")
    title.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#import-status")).to_be_visible()
    assert page.evaluate(FOCUSED) == "uploads-close"  # on the panel still, not the page's start
    assert title.get_attribute("tabindex") is None


def test_the_memory_presets_are_one_named_group(studio):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.goto(f"{studio.trainer}/new")
        group = page.get_by_role("group", name="GPU memory preset")
        group.locator("button").first.wait_for()
        assert problems == []
        browser.close()
