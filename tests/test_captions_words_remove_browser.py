"""The caption words' Remove in a real browser, on tag-style captions: a phrase that begins or ends with a sign
("(red hair:1.2)", "in the rain.") is found and removed with its comma, as a plain word is; before, its pattern
(\\b at both ends) found nothing and the preview said "0 matches"."""

from __future__ import annotations

import itertools

import pytest

from tests import browser_studio
from tests.browser_studio import browser_marks, open_page
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)

CAPTIONS = ["mycat, (red hair:1.2), smiling, in the rain.", "mycat, (red  hair:1.2), outdoors, in the rain.",
            "(red hair:1.2), a cat, in the rain."]
SEEDED = itertools.count()  # each test its own dataset (and export name)


@pytest.fixture
def words_page(studio):
    from playwright.sync_api import sync_playwright

    dataset_id = browser_studio._seed_dataset(studio.datasets, "Tags", "mycat",
                                              [(f"t{i}.png", image_bytes(60 + i, size=(600, 600))) for i in range(3)],
                                              f"tags-{next(SEEDED)}")
    for i, caption in enumerate(CAPTIONS):
        studio.api(studio.datasets, f"/api/datasets/{dataset_id}/captions/t{i}.png", {"caption": caption}, "PUT")
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        browser_studio.login(page, studio.datasets)
        page.goto(f"{studio.datasets}/d/{dataset_id}")
        yield page, dataset_id
        browser.close()
    assert problems == []


def _captions(studio, dataset_id) -> list[str]:
    rows = studio.api(studio.datasets, f"/api/datasets/{dataset_id}/images?limit=100")["images"]
    return [row["caption"] for row in sorted(rows, key=lambda row: row["name"])]


@pytest.mark.parametrize("phrase, left", [
    ("(red hair:1.2)", ["mycat, smiling, in the rain.", "mycat, outdoors, in the rain.", "a cat, in the rain."]),
    ("in the rain.", ["mycat, (red hair:1.2), smiling", "mycat, (red  hair:1.2), outdoors", "(red hair:1.2), a cat"]),
])
def test_remove_takes_a_phrase_with_signs_at_its_ends_out_of_every_caption(studio, words_page, phrase, left):
    from playwright.sync_api import expect

    page, dataset_id = words_page
    page.click("#btn-words")
    page.locator("#words-tabs [data-words='phrases']").click()
    row = page.locator("#words-list .word-row", has=page.locator(f"[data-search='{phrase}']"))
    expect(row).to_contain_text("3 of 3")
    row.locator("[data-remove]").click()
    expect(page.locator("#replace-summary")).to_have_text("3 matches in 3 captions")
    page.locator("#replace-apply").click()
    expect(page.locator(".toast", has_text="Replaced 3 matches in 3 captions")).to_be_visible()
    assert _captions(studio, dataset_id) == left


def test_remove_still_takes_a_plain_word_with_its_comma(studio, words_page):
    from playwright.sync_api import expect

    page, dataset_id = words_page
    page.click("#btn-words")
    page.locator("#words-list .word-row", has=page.locator("[data-search='smiling']")).locator("[data-remove]").click()
    expect(page.locator("#replace-summary")).to_have_text("1 match in 1 caption")
    page.locator("#replace-apply").click()
    expect(page.locator(".toast", has_text="Replaced 1 match in 1 caption")).to_be_visible()
    assert _captions(studio, dataset_id)[0] == "mycat, (red hair:1.2), in the rain."
