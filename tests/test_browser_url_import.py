"""Import from a link in a real browser against a real server: the button, a pasted link, the download's
progress and result in the uploads panel, and a share page's sentence. A local HTTP server stands in for the
web (the studio runs with ALLOW_PRIVATE_URLS=1 to reach it)."""

from __future__ import annotations

import re

import requests

from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_url_import import web  # noqa: F401 - the stand-in web, a fixture
from tests.test_lora_import import lora_web  # noqa: F401 - the stand-in web serving LoRA files, a fixture
from tests.videos import video_bytes

pytestmark = browser_marks

PASTE_JS = """(text) => {
  const data = new DataTransfer();
  data.setData('text/plain', text);
  document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
}"""


def test_import_from_a_link_in_the_browser(studio_root, artifacts_dir, tmp_path, web):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    shots = artifacts_dir / "datasets"
    shots.mkdir(exist_ok=True)
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "ALLOW_PRIVATE_URLS": "1"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Linked"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.click("#btn-link-empty")
        page.fill("#link-url", f"{web}/set.zip")
        page.screenshot(path=str(shots / "09-link-dialog.png"))
        page.click("#link-start")
        expect(page.locator("#import-status")).to_contain_text("Imported 2 images")
        expect(page.locator(".tile")).to_have_count(2)

        # a link pasted on the page opens the dialog with it; a share page says what to give instead
        page.evaluate("() => document.activeElement.blur()")  # focus outside any text field
        page.evaluate(PASTE_JS, f"{web}/share")
        expect(page.locator("#link-dialog")).to_be_visible()
        expect(page.locator("#link-url")).to_have_value(f"{web}/share")
        page.click("#link-start")
        expect(page.locator("#import-status")).to_contain_text("use a direct download link")
        expect(page.locator(".tile")).to_have_count(2)
        page.screenshot(path=str(shots / "09-link-failed.png"))
        # a link to a video: the frames to take from it, in the dialog
        page.click("#btn-link")
        expect(page.locator("#link-frames")).to_be_hidden()
        page.fill("#link-url", f"{web}/walk.mp4")
        expect(page.locator("#link-frames")).to_contain_text("Frames from 1 video: one every")
        expect(page.locator("#link-frames")).to_contain_text("walk.mp4")
        # the choice reads as a sentence: its list as wide as its words, not the dialog's whole width
        dialog_width = page.locator("#link-frames").bounding_box()["width"]
        assert page.locator("#link-frames .frame-seconds").bounding_box()["width"] < dialog_width / 2
        page.select_option("#link-frames .frame-seconds", "1")
        page.click("#link-start")
        expect(page.locator("#import-status")).to_contain_text("4 frames from 1 video")  # 2 every 2 s
        expect(page.locator(".tile")).to_have_count(6)
        # a malformed link is answered in the dialog itself
        page.click("#btn-link")
        page.fill("#link-url", "ftp://example.com/set.zip")
        page.click("#link-start")
        expect(page.locator("#link-error")).to_contain_text("http:// or https://")
        assert problems == []
        browser.close()


def test_express_takes_a_link_instead_of_files(studio_root, tmp_path, web):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
           "ALLOW_PRIVATE_URLS": "1"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/express")
        page.fill("#x-trigger", "zxlinked")
        page.click("#x-go")
        expect(page.locator("#x-error")).to_contain_text("or paste a link to a ZIP")  # nothing chosen yet
        expect(page.locator("#x-limit-row")).to_be_hidden()  # "take at most" belongs to a link
        page.fill("#x-link", f"{web}/set.zip")
        expect(page.locator("#x-limit-row")).to_be_visible()
        page.fill("#x-limit", "1")
        page.select_option("#x-spread", "1")  # spread over the ZIP rather than its first image
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/start")) as sent:
            page.click("#x-go")
        assert sent.value.post_data_json["limit"] == 1 and sent.value.post_data_json["spread"] is True
        expect(page.locator(".x-stage[data-stage=import]")).to_have_class(re.compile("completed"))
        expect(page.locator(".x-stage[data-stage=upload]")).to_contain_text("1 image in the dataset")
        assert problems == []
        browser.close()


def test_a_hugging_face_dataset_link_imports_the_dataset_with_its_captions(studio_root, artifacts_dir, tmp_path,
                                                                          hub):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    (artifacts_dir / "datasets").mkdir(exist_ok=True)
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "HF_ENDPOINT": hub.url,
           "HF_HUB_OFFLINE": "0", "MAX_UPLOAD_MB": "1"}
    hub.add("datasets/me/clips", {"walk.mp4": video_bytes([1, 2, 3, 4], seconds_each=1.0, sharp_at=3)},
            lfs=("walk.mp4",))
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Portraits"}, timeout=10).json()["id"]
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        page.evaluate(PASTE_JS, "https://huggingface.co/datasets/me/portraits/tree/main/extra")
        expect(page.locator("#link-dialog")).to_be_visible()
        # what the link holds shows under it before anything is downloaded
        expect(page.locator("#link-check")).to_contain_text("me/portraits/extra: 2 images, 2 caption files")
        page.click("#link-start")
        expect(page.locator("#import-status")).to_contain_text("Imported 2 images")
        expect(page.locator(".tile")).to_have_count(2)
        expect(page.locator(".tile").first).to_contain_text("a man in a hat")  # from the folder's metadata.jsonl
        page.screenshot(path=str(artifacts_dir / "datasets" / "09-hub-dataset.png"))
        # a dataset that keeps its images in Parquet files imports row by row, captions and all; "take at most"
        # stops reading at that many images (the first split's row, then the next split's first row)
        page.click("#btn-link")
        page.fill("#link-url", "https://huggingface.co/datasets/me/big")  # over MAX_UPLOAD_MB: said at once
        expect(page.locator("#link-check")).to_contain_text("the pod downloads at once (MAX_UPLOAD_MB)")
        page.screenshot(path=str(artifacts_dir / "datasets" / "09-link-check.png"))
        expect(page.locator("#link-frames")).to_be_hidden()  # no video in it
        page.fill("#link-url", "https://huggingface.co/datasets/me/nothing-here")
        expect(page.locator("#link-check")).to_contain_text("was not found on the hub")
        page.fill("#link-url", "https://huggingface.co/datasets/me/tables")
        expect(page.locator("#link-check")).to_contain_text("me/tables: 2 Parquet files")
        page.fill("#link-limit", "2")
        expect(page.locator("#link-spread")).to_have_value("")  # the first ones, unless told
        page.click("#link-start")
        expect(page.locator("#import-status")).to_contain_text("Imported 2 images")
        expect(page.locator("#import-status")).to_contain_text("stopped at the limit of 2 images (1 more image "
                                                               "left out)")
        expect(page.locator(".tile")).to_have_count(4)
        expect(page.locator(".tile", has_text="a green door")).to_have_count(1)
        expect(page.locator(".tile", has_text="a red door")).to_have_count(1)
        page.click("#btn-link")
        expect(page.locator("#link-limit")).to_have_value("")  # a new import takes everything unless told
        page.fill("#link-limit", "3")
        page.select_option("#link-spread", "1")
        page.keyboard.press("Escape")
        page.click("#btn-link")
        expect(page.locator("#link-spread")).to_have_value("")
        # a dataset of clips: the frames to take from its videos, chosen in the dialog
        page.fill("#link-url", "https://huggingface.co/datasets/me/clips")
        expect(page.locator("#link-check")).to_contain_text("1 video")
        expect(page.locator("#link-frames")).to_contain_text("Frames from 1 video: one every")
        page.select_option("#link-frames .frame-seconds", "1")
        page.click("#link-start")
        expect(page.locator("#import-status")).to_contain_text("4 frames from 1 video")  # 2 at every 2 s
        assert problems == []
        browser.close()


def test_an_import_cut_short_offers_to_import_the_rest(studio_root, artifacts_dir, tmp_path, web):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    from studio.jobs import JobStore

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "ALLOW_PRIVATE_URLS": "1"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = requests.post(f"{server.url}/api/datasets", json={"name": "Cut"}, timeout=10).json()["id"]
        store = JobStore(studio_root / "studio.db")  # an import a restart cut short, as the store holds it
        job, _ = store.create("import", dataset=dataset_id, total=2, owner="999999999:1",
                              config={"source": "url", "url": f"{web}/set.zip", "limit": None})
        store.start(job.id, "999999999:1")
        store.finish(job.id, "interrupted", resumable=True,
                     message="Interrupted at 1 of 2: the process running it ended (a restart or a crash).")
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/d/{dataset_id}")
        expect(page.locator("#uploads-title")).to_have_text("Import cut short")
        expect(page.locator("#import-status")).to_contain_text("Interrupted at 1 of 2")
        page.screenshot(path=str(artifacts_dir / "datasets" / "09-import-cut-short.png"))
        page.click("#import-resume")
        expect(page.locator("#import-status")).to_contain_text("Imported 2 images")
        expect(page.locator(".tile")).to_have_count(2)
        page.reload()  # the latest import finished: nothing is offered any more
        expect(page.locator(".tile")).to_have_count(2)
        expect(page.locator("#import-resume")).to_have_count(0)
        assert problems == []
        browser.close()


def test_a_lora_from_a_link_joins_the_library(studio_root, tmp_path, lora_web):  # noqa: F811
    """The library's "Add a LoRA from a link": the download's state, then its card (with Make smaller); a file that is
    not a LoRA of this model says so and adds nothing."""
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "ALLOW_PRIVATE_URLS": "1"}
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "server.log") as server, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/library")
        expect(page.locator("#library")).to_contain_text("No finished LoRA yet")
        page.fill("#lora-url", f"{lora_web}/cat.safetensors")
        page.click("#lora-link-add")
        expect(page.locator(".toast", has_text="Added cat.safetensors (rank 4) to the library.")).to_be_visible()
        card = page.locator(".lora-card", has_text="cat.safetensors")
        expect(card.locator(".smaller > summary")).to_have_text("Make smaller")
        # the way straight on: try it
        expect(page.locator("#lora-link-state a")).to_have_attribute("href", "/library/try/cat.safetensors")
        expect(card.locator("a", has_text="Try it")).to_have_attribute("href", "/library/try/cat.safetensors")
        page.fill("#lora-url", f"{lora_web}/sdxl.safetensors")
        page.click("#lora-link-add")
        expect(page.locator(".toast", has_text="not a LoRA of Z-Image's layers")).to_be_visible()
        expect(page.locator(".lora-card")).to_have_count(1)
        assert problems == []
        browser.close()


DROP_JS = """([name, bytes]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], name));
  for (const type of ['dragover', 'drop']) {
    document.body.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
  }
}"""


def test_a_lora_from_this_computer_joins_the_library(studio_root, tmp_path, artifacts_dir):
    """The library's "Upload a file…": a LoRA of two chunks goes up with a progress bar and joins the cards; a LoHa
    dropped on the page becomes a LoRA; a file of another kind is refused before anything is sent."""
    import numpy as np
    from playwright.sync_api import expect, sync_playwright

    from studio.workspace import Workspace
    from tests.test_library_upload import _big_lora
    from tests.test_loha_lora import _loha
    from trainer.lora_resize import encode

    lora = tmp_path / "My Style.safetensors"
    lora.write_bytes(_big_lora())
    loha = encode(_loha(np.random.default_rng(8), dim=2)[0], "BF16", {})
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "UPLOAD_CHUNK_MB": "1"}
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "server.log") as server, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{server.url}/library")
        expect(page.locator("#library")).to_contain_text("No finished LoRA yet")
        page.set_input_files("#lora-file", str(lora))
        expect(page.locator(".toast", has_text="Added My-Style.safetensors (rank 8) to the library.")).to_be_visible()
        expect(page.locator(".lora-card", has_text="My-Style.safetensors")).to_be_visible()
        expect(page.locator("#lora-link-state a")).to_have_attribute("href", "/library/try/My-Style.safetensors")
        expect(page.locator("#lora-upload-bar")).to_be_hidden()
        page.screenshot(path=str(artifacts_dir / "library-upload-1280.png"))
        page.evaluate(DROP_JS, ["ink.safetensors", list(loha)])
        expect(page.locator(".toast", has_text="a LyCORIS LoHa of dim 2, exactly")).to_be_visible()
        card = page.locator(".lora-card", has_text="ink.safetensors")
        expect(card).to_contain_text("converted from kohya's key names, a LyCORIS LoHa of dim 2, exactly")
        page.evaluate(DROP_JS, ["notes.txt", [104, 105]])
        expect(page.locator(".toast", has_text="notes.txt is not a .safetensors file")).to_be_visible()
        expect(page.locator(".lora-card")).to_have_count(2)
        # the pod cannot write the file (a file stands where its folder goes): the chunks stay, Try again sends nothing
        incoming = Workspace(studio_root).loras / ".incoming"
        incoming.rmdir()
        incoming.write_text("in the way")
        lora.write_bytes(_big_lora().replace(b'"zkw"', b'"zkq"'))  # another file of that name: a name of its own
        page.set_input_files("#lora-file", str(lora))
        expect(page.locator("#lora-upload-again")).to_be_visible()
        expect(page.locator("#lora-link-state")).to_contain_text("the file is on the pod already")
        incoming.unlink()
        page.click("#lora-upload-again")
        expect(page.locator(".toast", has_text="Added My-Style-2.safetensors (rank 8) to the library.")).to_be_visible()
        expect(page.locator(".lora-card")).to_have_count(3)
        # Edit…: a new name and a trigger word for the LoHa's card
        card = page.locator(".lora-card", has_text="ink.safetensors")
        card.locator(".card-edit > summary").click()
        card.locator("input[name=name]").fill("Ink Wash")
        card.locator("input[name=trigger_word]").fill("inkz")
        page.screenshot(path=str(artifacts_dir / "library-edit-1280.png"))
        card.locator(".card-edit-form button[type=submit]").click()
        expect(page.locator(".toast", has_text="Ink-Wash.safetensors, trigger inkz: saved.")).to_be_visible()
        card = page.locator(".lora-card", has_text="Ink-Wash.safetensors")
        expect(card.locator(".chip")).to_have_text("inkz")
        expect(card.locator("a", has_text="Try it")).to_have_attribute("href", "/library/try/Ink-Wash.safetensors")
        expect(page.locator(".lora-card")).to_have_count(3)
        page.set_viewport_size({"width": 390, "height": 844})
        card.locator(".card-edit > summary").click()
        card.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts_dir / "library-edit-390.png"))
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1).map((e) => e.tagName + '#' + e.id)""")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
        assert problems == []
        browser.close()
