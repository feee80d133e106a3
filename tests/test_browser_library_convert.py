"""Browser test: a LoRA copied into the library by hand in kohya's key names, with the real web app and worker in
demo mode. Its card says what it is and offers Convert instead of Try it, Train further and Merge; Convert writes it in
this studio's layout, the file as it was waits in Recently deleted, and the converted file renders with Try it; Convert
all does the rest of a folder copied in. A LoRA in ComfyUI's own loras folder is added to the library with one click."""

from __future__ import annotations

from types import SimpleNamespace

from studio.jobs import JobStore
from studio.workspace import Workspace
from tests.browser_studio import browser_marks, open_page
from tests.test_browser_library import _rendered
from tests.test_browser_trainer import studio  # noqa: F401 - the real web app and worker, a fixture
from tests.test_trainer_library_tries import library_lora
from trainer import lora_import

pytestmark = browser_marks


def _as_kohya(path) -> None:
    """The LoRA at `path` rewritten as kohya writes one: underscored names, lora_down/lora_up and alpha."""
    import numpy as np

    from trainer.lora_resize import encode, read_tensors

    header, tensors = read_tensors(path)
    out = {}
    for key, value in tensors.items():
        module = key.removeprefix("diffusion_model.").rsplit(".lora_", 1)[0]
        stem = "lora_unet_" + module.replace(".", "_")
        if key.endswith(".lora_A.weight"):
            out[f"{stem}.lora_down.weight"], out[f"{stem}.alpha"] = value, np.array(float(len(value)), np.float32)
        else:
            out[f"{stem}.lora_up.weight"] = value
    path.write_bytes(encode(out, "F32", header.get("__metadata__") or {}))


def test_a_kohya_file_copied_in_is_converted_on_its_card_then_tried(studio, demo_root, demo_paths,  # noqa: F811
                                                                     artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    path = library_lora(SimpleNamespace(root=demo_root), demo_paths, "copied-in.safetensors", trigger="kzx")
    _as_kohya(path)
    for other in ("second", "third"):  # a folder of them copied in: Convert all
        _as_kohya(library_lora(SimpleNamespace(root=demo_root), demo_paths, f"{other}.safetensors", trigger=None))
    store = JobStore(Workspace(demo_root).db_path)
    waiting, _ = store.create(lora_import.KIND, name="Convert second.safetensors",
                              config={"convert": "second.safetensors"}, message="Waiting for a free slot.")
    with sync_playwright() as p:
        browser, page, problems = open_page(p, {"width": 1280, "height": 900})
        page.goto(studio + "/library")
        # a conversion on its way when the page loads: its card follows it
        second = page.locator(".lora-card", has_text="second.safetensors")
        expect(second.locator("[data-convert-state]")).to_have_text("Waiting for a free slot.")
        expect(second.locator("button[data-convert]")).to_be_disabled()
        page.evaluate("document.dispatchEvent(new CustomEvent('library:changed'))")  # the cards are drawn again
        store.progress(waiting.id, {"message": "Still waiting for a free slot."})
        expect(second.locator("[data-convert-state]")).to_have_text("Still waiting for a free slot.")
        store.finish(waiting.id, "failed", error="It stopped: the pod ran out of memory.")
        expect(page.locator(".toast", has_text="the pod ran out of memory")).to_be_visible()
        expect(second.locator("button[data-convert]")).to_be_enabled()
        card = page.locator(".lora-card", has_text="copied-in.safetensors")
        expect(card.locator("[data-foreign]")).to_contain_text("In kohya's key names, as another trainer wrote it")
        expect(page.locator("#convert-all-count")).to_have_text(
            "3 files copied into the library are in another trainer's layout.")
        for hidden in ("Try it", "Train further", "Merge…"):
            expect(card.locator(".buttons > *", has_text=hidden)).to_have_count(0)
        page.screenshot(path=str(artifacts_dir / "library-convert-1280.png"))
        page.set_viewport_size({"width": 390, "height": 844})  # on a phone the note wraps inside the card
        page.screenshot(path=str(artifacts_dir / "library-convert-390.png"))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.set_viewport_size({"width": 1280, "height": 900})
        card.locator("button[data-convert]").click()
        expect(page.locator(".toast", has_text="Converted copied-in.safetensors from kohya's key names (rank 4)"))\
            .to_be_visible()
        expect(card.locator("[data-foreign]")).to_have_count(0)
        expect(card).to_contain_text("converted from kohya's key names")
        expect(page.locator("#trash-list")).to_contain_text("copied-in.safetensors, before converting from kohya's")
        expect(page.locator("#convert-all-count")).to_have_text(
            "2 files copied into the library are in another trainer's layout.")
        page.click("#convert-all")
        expect(page.locator(".toast", has_text="Converted 2 of 2 files.")).to_be_visible()
        expect(page.locator("#library [data-foreign]")).to_have_count(0)
        expect(page.locator("#convert-all-row")).to_be_hidden()
        expect(page.locator("#trash-list li")).to_have_count(3)
        card.locator("a", has_text="Try it").click()
        page.wait_for_url("**/library/try/copied-in.safetensors")
        expect(page.locator("#try-prompt")).to_have_value("[trigger], ")  # its trigger word kept
        page.fill("#try-prompt", "[trigger], a blue circle")
        rendered = _rendered(page, cards=1, images=3)
        expect(rendered.locator(".prompt")).to_have_text("kzx, a blue circle")
        # a Z-Image LoRA in ComfyUI's own loras folder: added to the library with one click, then converted
        comfy = demo_root / "ComfyUI" / "models" / "loras" / "styles"
        comfy.mkdir(parents=True)
        theirs = library_lora(SimpleNamespace(root=demo_root), demo_paths, "theirs.safetensors", trigger=None)
        _as_kohya(theirs)
        theirs.rename(comfy / "theirs.safetensors")
        page.goto(studio + "/library")
        expect(page.locator("#comfy-only > summary")).to_have_text("1 Z-Image LoRA in ComfyUI's loras only")
        page.locator("#comfy-only > summary").click()
        expect(page.locator("#comfy-only-list li")).to_contain_text("styles/theirs.safetensors")
        page.screenshot(path=str(artifacts_dir / "library-comfyui-only-1280.png"), full_page=True)
        page.locator("#comfy-only-list button[data-comfy-add]").click()
        expect(page.locator(".toast", has_text="theirs.safetensors is in the library; it is in kohya's key names"))\
            .to_be_visible()
        expect(page.locator("#comfy-only")).to_be_hidden()
        expect(page.locator(".lora-card", has_text="theirs.safetensors")).to_contain_text(
            "from ComfyUI's loras (styles/theirs.safetensors)")
        page.locator(".lora-card", has_text="theirs.safetensors").locator("button[data-convert]").click()
        expect(page.locator(".toast", has_text="Converted theirs.safetensors from kohya's key names")).to_be_visible()
        expect(page.locator("#comfy-only")).to_be_hidden()  # ComfyUI's file, as it was, is not offered again
        assert problems == []
        browser.close()
