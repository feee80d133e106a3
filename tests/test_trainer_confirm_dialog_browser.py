"""The trainer's questions before it deletes or stops something are asked in the page (trainer.confirmDialog), not
with the browser's confirm(), which cannot be styled and stops the page: the keyboard starts on Cancel and stays in
the dialog, Escape and Cancel send nothing, OK does what was asked, and the focus goes back to the button that asked."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.browser_studio import PHONE, assert_no_sideways_scroll, browser_marks, login, open_page, studio  # noqa: F401
from tests.test_library_edit import _lora

pytestmark = browser_marks

IN_DIALOG = "document.getElementById('confirm-dialog').contains(document.activeElement)"


def _deletes(page) -> list[str]:
    """Every DELETE the page sends from now on, as "DELETE /path"."""
    sent: list[str] = []

    def seen(request):
        if request.method == "DELETE":
            sent.append(f"DELETE {urlsplit(request.url).path}")

    page.on("request", seen)
    return sent


def test_deleting_a_library_file_asks_in_the_page(studio):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    studio.workspace.loras.mkdir(parents=True, exist_ok=True)
    (studio.workspace.loras / "qa-first.safetensors").write_bytes(_lora())
    with sync_playwright() as p:
        browser, page, problems = open_page(p)
        login(page, studio.trainer)
        page.goto(studio.trainer + "/library")
        sent = _deletes(page)
        card = page.locator(".lora-card", has_text="qa-first.safetensors")
        button = card.locator("button[data-delete]")
        dialog = page.locator("#confirm-dialog")

        button.click()
        expect(dialog).to_be_visible()
        assert page.evaluate("document.getElementById('confirm-dialog').matches(':modal')")  # the page behind: inert
        expect(page.locator("#confirm-title")).to_have_text("Delete qa-first.safetensors?")
        text = page.locator("#confirm-text")
        expect(text).to_contain_text("This removes it from the LoRA library")
        expect(text).to_contain_text("Recently deleted, below, keeps it 7 days.")
        expect(page.locator("#confirm-ok")).to_have_text("Delete")
        expect(page.locator("#confirm-cancel")).to_be_focused()  # Enter pressed once too often deletes nothing
        # Tab and Shift+Tab go round the dialog's two buttons, never to the page behind it
        page.keyboard.press("Tab")
        expect(page.locator("#confirm-ok")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.locator("#confirm-cancel")).to_be_focused()
        page.keyboard.press("Shift+Tab")
        expect(page.locator("#confirm-ok")).to_be_focused()
        for _ in range(5):
            page.keyboard.press("Tab")
            assert page.evaluate(IN_DIALOG)
        # Escape: nothing is sent, the card stays, the keyboard is back on its Delete
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0)
        expect(button).to_be_focused()
        # Cancel: the same
        button.click()
        page.locator("#confirm-cancel").click()
        expect(dialog).to_have_count(0)
        expect(button).to_be_focused()
        page.wait_for_timeout(300)  # a request would have gone by now
        assert sent == []
        expect(card).to_have_count(1)
        # OK, from the keyboard: the file goes to Recently deleted
        button.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#confirm-cancel")).to_be_focused()
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(card).to_have_count(0)
        expect(dialog).to_have_count(0)
        assert sent == ["DELETE /api/library/files/qa-first.safetensors"]
        expect(page.locator("#trash li", has_text="qa-first.safetensors")).to_have_count(1)
        assert problems == []
        browser.close()


def test_emptying_recently_deleted_asks_in_the_page(studio):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    studio.workspace.loras.mkdir(parents=True, exist_ok=True)
    (studio.workspace.loras / "qa-second.safetensors").write_bytes(_lora())
    studio.api(studio.trainer, "/api/library/files/qa-second.safetensors", method="DELETE")
    with sync_playwright() as p:
        browser, page, problems = open_page(p, PHONE)
        login(page, studio.trainer)
        page.goto(studio.trainer + "/library")
        sent = _deletes(page)
        empty = page.locator("#trash-empty")
        expect(page.locator("#trash li", has_text="qa-second.safetensors")).to_have_count(1)

        empty.click()
        expect(page.locator("#confirm-title")).to_have_text("Empty Recently deleted?")
        expect(page.locator("#confirm-text")).to_have_text(
            "Remove everything in Recently deleted for good, to free its space?")
        expect(page.locator("#confirm-ok")).to_have_text("Empty")
        assert_no_sideways_scroll(page)  # it fits a phone
        page.keyboard.press("Escape")
        expect(page.locator("#confirm-dialog")).to_have_count(0)
        expect(empty).to_be_focused()
        page.wait_for_timeout(300)
        assert sent == []

        empty.click()
        page.locator("#confirm-ok").click()
        expect(page.locator("#trash")).to_be_hidden()
        assert sent == ["DELETE /api/trash"]
        # the toast says what the disk got back (the file's bytes: it had no other name)
        expect(page.locator(".toast", has_text=re.compile(r"Recently deleted is empty: [\d.]+ (B|KB|MB) freed\."))) \
            .to_be_visible()
        assert problems == []
        browser.close()
