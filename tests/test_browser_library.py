"""Browser test: the LoRA library with files no job of this pod made (here one put there as a LoRA from a link
would be, its smaller copy made through the API, and a style LoRA), the real web app and worker in demo mode:
the filter, a file's own Try page, With, Beside, the ComfyUI workflow of a render, the card's pictures,
Recently deleted bringing a file back, and two files merged into one."""

from __future__ import annotations

import json
from types import SimpleNamespace

from tests.browser_studio import ARGS, CHROMIUM, browser_marks, watch_page
from tests.test_browser_trainer import _post, studio  # noqa: F401 - the real web app and worker, a fixture
from tests.test_trainer_library_tries import library_lora

pytestmark = browser_marks


def _rendered(page, cards: int, images: int):
    """Render with the Try form as it is set; the new render's card once its pictures are in."""
    from playwright.sync_api import expect

    page.locator("#try-go").click()
    expect(page.locator(".try-card")).to_have_count(cards)
    card = page.locator(".try-card").first
    expect(card).to_contain_text(f"Rendered {images} images", timeout=120_000)
    return card


def test_a_library_file_is_tried_with_and_beside_others(studio, demo_root, demo_paths, artifacts_dir):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    root = SimpleNamespace(root=demo_root)
    library_lora(root, demo_paths, "browser-lora.safetensors", trigger="tok")
    library_lora(root, demo_paths, "style.safetensors", trigger=None)
    made = _post(f"{studio}/api/library/files/browser-lora.safetensors/resize", {"rank": 2})
    assert made["file"] == "browser-lora-r2.safetensors"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        problems = watch_page(page)
        page.set_default_timeout(30_000)
        page.goto(studio + "/library")
        # with many LoRAs, a filter: every word typed, in the name, file, trigger words or dataset
        expect(page.locator("#library-count")).to_have_text("3 LoRAs")
        page.fill("#library-filter", "r2")
        expect(page.locator(".lora-card:visible")).to_have_count(1)
        expect(page.locator("#library-count")).to_have_text("1 of 3")
        page.fill("#library-filter", "tok browser")
        expect(page.locator(".lora-card:visible")).to_have_count(2)  # the style LoRA has no trigger word
        page.fill("#library-filter", "")
        expect(page.locator(".lora-card:visible")).to_have_count(3)
        # a file no job made (here the smaller copy; a LoRA from a link alike) is tried on a page of its own
        page.locator(".lora-card", has_text="browser-lora-r2.safetensors").locator("a", has_text="Try it").click()
        page.wait_for_url("**/library/try/browser-lora-r2.safetensors")
        expect(page.locator("#lora-facts")).to_contain_text("rank 2")
        expect(page.locator("#lora-about")).to_contain_text("trigger tok")
        expect(page.locator("#lora-about")).to_contain_text("a smaller copy of browser-lora.safetensors")
        expect(page.locator("#try-lora option")).to_have_text(["browser-lora-r2"])
        expect(page.locator("#try-size")).to_have_value("64x64")  # the demo model's size
        expect(page.locator("#try-prompt")).to_have_value("[trigger], ")
        page.fill("#try-prompt", "[trigger], a red square")
        card = _rendered(page, cards=1, images=3)
        expect(card.locator(".prompt")).to_have_text("tok, a red square")
        expect(card.locator("figcaption")).to_have_text(["Base (LoRA off)", "LoRA 0.8", "LoRA 1"])
        expect(card.locator("[data-publish]")).to_have_count(0)  # in the library already
        # with another library LoRA on every image (a style under a character); the file tried is not offered
        expect(page.locator("#try-with option")).to_have_text(["no other LoRA", "browser-lora", "style"])
        expect(page.locator("#try-with-strength")).to_be_hidden()
        page.select_option("#try-with", "style.safetensors")
        page.fill("#try-with-strength", "0.5")
        stacked = _rendered(page, cards=2, images=3)
        expect(stacked.locator(".try-meta").first).to_contain_text("browser-lora-r2 · with style at 0.5")
        expect(stacked.locator("figcaption")).to_have_text(["This LoRA off", "LoRA 0.8", "LoRA 1"])
        # the render as a ComfyUI workflow: the LoRA at 1, then the other one at its strength
        with page.expect_download() as info:
            stacked.locator("[data-try-workflow]").click()
        nodes = json.loads(open(info.value.path()).read())
        assert sorted((n["inputs"]["lora_name"], n["inputs"]["strength_model"]) for n in nodes.values()
                      if n["class_type"] == "LoraLoaderModelOnly") == [("browser-lora-r2.safetensors", 1.0),
                                                                        ("style.safetensors", 0.5)]
        assert info.value.suggested_filename.startswith("browser-lora-r2-seed")
        # the smaller copy beside the original, at the same strengths: a row each
        page.select_option("#try-with", "")
        expect(page.locator("#try-with-strength")).to_be_hidden()
        page.select_option("#try-beside", "browser-lora.safetensors")
        side = _rendered(page, cards=3, images=5)
        expect(side.locator(".try-meta").first).to_contain_text("browser-lora-r2 beside browser-lora")
        expect(side.locator(".try-sweep-title span")).to_have_text(["Base model", "browser-lora-r2", "browser-lora"])
        page.wait_for_function("[...document.querySelectorAll('.try-card img')].every(i => i.naturalWidth > 0)")
        page.screenshot(path=str(artifacts_dir / "trainer-try-library-file.png"))
        # back in the library, the smaller copy's card shows what it rendered
        page.goto(studio + "/library")
        small = page.locator(".lora-card", has_text="browser-lora-r2.safetensors")
        expect(small.locator(".preview img")).to_have_count(3)
        page.wait_for_function("[...document.querySelectorAll('.lora-card img')].every(i => i.naturalWidth > 0)")
        page.screenshot(path=str(artifacts_dir / "trainer-library-files.png"), full_page=True)
        # deleted, it waits in Recently deleted, and comes back
        small.locator("button[data-delete]").click()
        page.locator("#confirm-ok").click()
        expect(small).to_have_count(0)
        page.locator("#trash li", has_text="browser-lora-r2.safetensors").locator("[data-restore]").click()
        expect(page.locator(".toast", has_text="browser-lora-r2.safetensors is back in the library")).to_be_visible()
        expect(small).to_have_count(1)
        expect(page.locator("#trash")).to_be_hidden()
        # merged into one file: the card's Merge opens the panel with it first, the style beside it at 0.5
        page.locator("button[data-merge='browser-lora.safetensors']").click()
        expect(page.locator("#merge")).to_have_attribute("open", "")
        rows = page.locator(".merge-row")
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator("select")).to_have_value("browser-lora")
        rows.nth(1).locator("select").select_option("style")
        rows.nth(1).locator("input").fill("0.5")
        page.locator("#merge-go").click()
        expect(page.locator("#merge-state")).to_contain_text("browser-lora-style.safetensors: rank ")
        expect(page.locator("#merge-state")).to_contain_text("keeping 100% of the merged change")
        merged = page.locator(".lora-card", has_text="browser-lora-style.safetensors")
        expect(merged).to_have_count(1)
        expect(page.locator("#library-count")).to_have_text("4 LoRAs")
        page.locator("#merge-state a", has_text="Try it").click()
        page.wait_for_url("**/library/try/browser-lora-style.safetensors")
        # a render tried With another LoRA leads to Merge with those files at those strengths
        page.goto(studio + "/library/try/browser-lora-r2.safetensors")
        with_style = page.locator(".try-card", has_text="with style at 0.5")
        expect(with_style.locator("[data-try-merge]")).to_have_count(1)
        expect(page.locator(".try-card", has_text="beside browser-lora").locator("[data-try-merge]")).to_have_count(0)
        with_style.locator("[data-try-merge]").click()
        page.wait_for_url("**/library?merge=*")
        expect(page.locator("#merge")).to_have_attribute("open", "")
        rows = page.locator(".merge-row")
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator("select")).to_have_value("browser-lora-r2")
        expect(rows.nth(0).locator("input")).to_have_value("1")
        expect(rows.nth(1).locator("select")).to_have_value("style")
        expect(rows.nth(1).locator("input")).to_have_value("0.5")
        assert problems == []
        browser.close()


def test_the_try_page_fits_a_phone_with_long_lora_names(studio, demo_root, demo_paths, artifacts_dir):  # noqa: F811
    """With and Beside list every library LoRA by name: a long one (80 characters) stays inside a phone's width."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser_studio import open_page

    root = SimpleNamespace(root=demo_root)
    library_lora(root, demo_paths, "short.safetensors", trigger=None)
    library_lora(root, demo_paths, f"kohya_style_lora-mia-portraits-{'a-very-long-dataset-name-' * 2}v4.safetensors",
                 trigger=None)
    with sync_playwright() as p:
        browser, page, problems = open_page(p, {"width": 390, "height": 844})
        page.goto(studio + "/library/try/short.safetensors")
        expect(page.locator("#try-with option")).to_have_count(2)
        page.screenshot(path=str(artifacts_dir / "trainer-try-library-file-390.png"), full_page=True)
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1).map((e) => e.tagName + '#' + e.id)""")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
        assert problems == []
        browser.close()


def test_a_card_whose_job_trains_further_says_so_and_keeps_delete_away(studio_root, demo_paths, tmp_path):
    """No worker runs here, so the job queued to train further stays queued while the page is looked at."""
    from playwright.sync_api import expect, sync_playwright

    from studio.jobs import JobStore
    from studio.workspace import Workspace
    from tests.browser_studio import open_page
    from tests.helpers import ServerProcess
    from tests.test_trainer_renders import finished_job
    from trainer.library import publish

    space = Workspace(studio_root)
    space.ensure()
    store = JobStore(space.db_path)
    job = finished_job(store, studio_root, demo_paths)
    publish(space, job, space.jobs / job.id / "lora" / "tiny-lora.safetensors")
    store.resume(job.id, "Waiting for the worker: 100 more steps.", also_completed=True)
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as server, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(server.url + "/library")
        card = page.locator(".lora-card")
        expect(card).to_have_count(1)
        expect(card.locator("[data-further]")).to_contain_text("Queued to train further: this file is replaced")
        expect(card.locator("a", has_text="Try it")).to_be_visible()  # the file as it is can still be tried
        expect(card.locator("button[data-delete]")).to_have_count(0)
        expect(card.locator(".card-edit")).to_have_count(0)
        expect(card.locator("a", has_text="Train further")).to_have_count(0)
        assert problems == []
        browser.close()
