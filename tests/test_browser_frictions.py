"""Frictions a new user met, each proven in chromium at 1280x800 and at 390x844 against real servers:
the new-job form follows the dataset (trigger word, a free LoRA name, the recipe's step count, a CPU or
demo estimate said as such), the job log reads cleanly, the worker chip follows the job, the gallery
says how small a small image is and leaves duplicates out of the export, the Trainer link opens a job
on the exported dataset, the caption dialog knows when every image has a caption, finished panels
and toasts step aside, a job trains on several datasets with their repeats, one starts from a
LoRA of the library, variants of one setting are queued and compared, and the caption words
show what the captions share."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from studio.processes import process_token
from tests import browser_studio
from tests.browser_studio import ARGS, CHROMIUM, VIEWPORTS, assert_no_sideways_scroll, browser_marks, login, watch_page
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks
studio = browser_studio.studio  # the module's servers (a fixture)


@pytest.fixture
def page(studio, viewport):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(20_000)
        problems = watch_page(page)
        login(page, studio.datasets)
        yield page
        browser.close()
        assert problems == []


def _value(page, field: str) -> str:
    return page.locator(f"#f-{field}").input_value()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_new_job_form_follows_the_dataset(studio, page, viewport, artifacts_dir):
    from playwright.sync_api import expect

    page.goto(studio.trainer + "/new?dataset=my-cat")
    # the dataset's trigger word, and a LoRA name from the dataset that the seeded job's my-cat leaves free
    expect(page.locator("#f-trigger_word")).to_have_value("mycat")
    expect(page.locator("#f-name")).to_have_value("my-cat-2")
    assert "[trigger]" in _value(page, "sample_prompts")  # previews now say "mycat ..."
    # the estimate says what it is, and the recipe's step count for 7 images (the duplicate left out) is one click
    expect(page.locator("#est-time .est-kind")).to_have_text("demo")
    expect(page.locator("#est-device")).to_contain_text("Demo estimate")
    expect(page.locator("#est-device")).to_contain_text("On disk it takes up to")
    expect(page.locator("#steps-hint-text")).to_have_text("For 7 images the recipe suggests 700 steps.")
    page.click("#use-steps")
    expect(page.locator("#f-steps")).to_have_value("700")
    expect(page.locator("#steps-hint")).to_be_hidden()
    expect(page.locator("#problems")).to_contain_text(
        "1 of 7 images is below the smallest training size of 512x512 px (tiny.png, 320x240)")
    assert_no_sideways_scroll(page)
    page.screenshot(path=str(artifacts_dir / f"frictions-new-job-{viewport['width']}.png"), full_page=True)

    # another dataset: both follow it
    page.locator(".dataset-card", has_text="dog-set").click()
    expect(page.locator("#f-trigger_word")).to_have_value("dogz")
    expect(page.locator("#f-name")).to_have_value("dog-set")
    # what the user typed stays typed
    page.fill("#f-trigger_word", "my own word")
    page.fill("#f-name", "my-cat")
    expect(page.locator("#name-taken")).to_contain_text("A LoRA named my-cat exists already")
    page.click("#name-taken [data-use-name]")
    expect(page.locator("#f-name")).to_have_value("my-cat-2")
    page.locator(".dataset-card", has_text="my-cat").click()
    expect(page.locator(".dataset-card.selected")).to_contain_text("my-cat")
    expect(page.locator("#f-trigger_word")).to_have_value("my own word")
    expect(page.locator("#f-name")).to_have_value("my-cat-2")
    assert '"trigger_word": "my own word"' in page.locator("#config-text").input_value()

    # a copy of a job gets a LoRA name of its own
    page.goto(f"{studio.trainer}/new?from={studio.job_id}")
    expect(page.locator(".dataset-card.selected")).to_contain_text("my-cat")
    expect(page.locator("#f-name")).to_have_value("my-cat-2")
    expect(page.locator("#f-job-name")).to_have_value("first try (copy)")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_an_ai_toolkit_config_fills_the_form(studio, page, viewport, artifacts_dir):
    import json

    import yaml
    from playwright.sync_api import expect

    from tests.test_aitoolkit_config import ZIMAGE_TURBO

    page.goto(studio.trainer + "/new?dataset=my-cat")
    expect(page.locator("#f-trigger_word")).to_have_value("mycat")
    page.click("[data-format='yaml']")
    page.fill("#config-text", ZIMAGE_TURBO)  # pasted into the text view
    page.locator("#f-steps").focus()  # leaving the text applies it
    notice = page.locator("#config-import")
    expect(notice).to_contain_text("Read as an ai-toolkit config:")
    expect(page.locator("#f-rank")).to_have_value("128")
    expect(page.locator("#f-steps")).to_have_value("3000")
    expect(page.locator("#f-optimizer")).to_have_value("prodigy")
    expect(page.locator("#f-preserve_class")).to_have_value("person")
    expect(page.locator("#f-trigger_word")).to_have_value("p3rs0n")
    expect(page.locator("#config-text")).to_have_value(re.compile(r"rank: 128"))  # the text shows the result
    assert "process:" not in page.locator("#config-text").input_value()
    expect(page.locator(".dataset-card.selected")).to_contain_text("my-cat")  # the dataset stays picked
    notice.locator("summary", has_text="Done the studio's way").click()
    expect(notice).to_contain_text("assistant_lora_path: the studio merges ostris' training adapter")
    assert_no_sideways_scroll(page)
    notice.screenshot(path=str(artifacts_dir / f"new-job-ai-toolkit-{viewport['width']}.png"))
    box = page.locator("label.config-file").bounding_box()  # Open a file stays on screen beside the tabs
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
    page.locator("#config-text").locator("xpath=..").screenshot(
        path=str(artifacts_dir / f"new-job-config-panel-{viewport['width']}.png"))

    # the JSON its web UI saves, opened as a file, with a setting changed
    doc = yaml.safe_load(ZIMAGE_TURBO)
    doc["config"]["process"][0]["network"]["linear"] = 64
    page.set_input_files("#config-file", files=[{"name": "job.json", "mimeType": "application/json",
                                                 "buffer": json.dumps(doc).encode()}])
    expect(page.locator("#f-rank")).to_have_value("64")
    expect(page.locator("[data-format='json']")).to_have_class(re.compile("active"))
    expect(page.locator("#config-text")).to_have_value(re.compile(r'"rank": 64'))
    page.fill("#config-text", '{"steps": 1200}')  # the studio's own JSON: read as it is, the notice goes
    page.locator("#f-rank").focus()
    expect(notice).to_be_hidden()


@pytest.mark.parametrize("viewport", VIEWPORTS[:1])
def test_the_text_view_starts_what_it_says(studio, page, viewport):
    from playwright.sync_api import expect

    posted = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" and r.url.endswith("/api/jobs") else None)
    page.goto(studio.trainer + "/new?dataset=my-cat")
    expect(page.locator("#f-trigger_word")).to_have_value("mycat")
    rank = _value(page, "rank")
    page.click("[data-format='yaml']")
    expect(page.locator("#config-text")).to_have_value(re.compile(r"trigger_word: mycat"))
    # a text that does not read: Start waits instead of starting the form's settings
    page.fill("#config-text", "steps: 123\nbroken: [")
    page.keyboard.press("Control+Enter")  # at once, from the text
    expect(page.locator("#config-text-error")).to_contain_text("YAML")
    expect(page.locator("#start")).to_be_disabled()
    expect(page.locator("#start-note")).to_have_text("The text view does not read: fix it (or undo the change) to "
                                                     "start.")
    # part of a config: the settings it leaves out keep the form's values, and the text shows them all again
    page.fill("#config-text", "steps: 123")
    page.locator("#f-rank").focus()
    expect(page.locator("#f-steps")).to_have_value("123")
    expect(page.locator("#start")).to_be_enabled()
    assert _value(page, "rank") == rank and _value(page, "trigger_word") == "mycat"
    expect(page.locator("#config-text")).to_have_value(re.compile(r"trigger_word: mycat"))
    assert posted == []
    # from the keyboard: Open a file's input takes the focus (Enter opens the browser's own picker there); a preset
    # button says if it is on
    page.locator("#config-file").focus()
    assert page.evaluate("document.activeElement.id") == "config-file"
    assert page.locator("#config-file").is_visible()  # out of sight, yet not hidden: Tab stops there
    expect(page.locator("#presets button[aria-pressed]")).not_to_have_count(0)


@pytest.mark.parametrize("viewport", VIEWPORTS[:1])
def test_a_lora_name_in_the_library_is_said_once_with_a_free_one(studio, page, viewport):
    from playwright.sync_api import expect

    taken = studio.workspace.loras / "kept-lora.safetensors"
    taken.parent.mkdir(parents=True, exist_ok=True)
    taken.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    try:
        page.goto(studio.trainer + "/new?dataset=my-cat")
        expect(page.locator("#f-trigger_word")).to_have_value("mycat")
        page.fill("#f-name", "kept-lora")
        expect(page.locator("#name-taken")).to_contain_text("A LoRA named kept-lora exists already")
        expect(page.locator("#job-form[data-checking]")).to_have_count(0)  # the server's report is in
        expect(page.locator("#problems li", has_text="kept-lora")).to_have_count(1)  # not the server's words too
    finally:
        taken.unlink()


@pytest.mark.parametrize("viewport", VIEWPORTS[:1])
def test_the_job_page_says_what_it_was_sent_and_when_the_trainer_cannot_be_reached(studio, page, viewport):
    from playwright.sync_api import expect

    # the form sent what was queued a moment ago: the job it opens says no second one was made
    page.goto(f"{studio.trainer}/jobs/{studio.job_id}?again=1")
    expect(page.locator(".toast")).to_contain_text("queued with the same settings a moment ago: no second one")
    assert page.url.endswith(f"/jobs/{studio.job_id}")
    # its web app restarting, or the pod's proxy down: the page's live updates get no answer
    unreachable = re.compile(rf".*/api/jobs/{studio.job_id}(/events.*)?$")
    page.route(unreachable, lambda route: route.abort("connectionrefused"))
    page.goto(f"{studio.trainer}/jobs/{studio.job_id}")
    expect(page.locator("#offline-banner")).to_contain_text("The trainer cannot be reached", timeout=30_000)
    page.unroute(unreachable)  # back: the banner goes
    expect(page.locator("#offline-banner")).to_have_count(0, timeout=30_000)


@pytest.mark.parametrize("viewport", VIEWPORTS[:1])
def test_exporting_under_another_datasets_export_name_is_refused_with_a_free_one(studio, page, viewport):
    from playwright.sync_api import expect

    page.goto(f"{studio.datasets}/d/dog-set")
    page.click("#btn-export")
    page.fill("#export-name", "my-cat")  # My cat's export: its job would train on the dogs
    page.click("#export-start")
    error = page.locator("#export-error")
    expect(error).to_contain_text("trainer/datasets/my-cat is the export of 'My cat'")
    expect(error.locator("button", has_text="Replace it")).to_be_visible()
    error.locator("button", has_text="Use my-cat-2").click()
    expect(page.locator("#export-name")).to_have_value("my-cat-2")
    expect(error).to_be_empty()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_dataset_name_another_has_is_refused_with_a_free_one(studio, page, viewport):
    from playwright.sync_api import expect

    page.goto(f"{studio.datasets}/d/dog-set")
    page.click("#ds-name")
    page.fill("#rename-input", "my CAT")  # two datasets called My cat: which one is which in every list?
    page.locator("#rename-form button.primary").click()
    error = page.locator("#rename-error")
    expect(error).to_contain_text("A dataset named 'my CAT' exists already")
    error.locator("button", has_text="Use my CAT 2").click()
    expect(page.locator("#rename-input")).to_have_value("my CAT 2")
    expect(error).to_be_empty()
    expect(page.locator("#ds-name")).to_have_text("Dog set")  # nothing was renamed
    # a new dataset of that name is said before anything is made
    page.goto(f"{studio.datasets}/")
    page.click("#new-dataset")
    page.fill("#create-name", " dog   SET ")
    page.click("#create-submit")
    error = page.locator("#create-error")
    expect(error).to_contain_text("A dataset named 'dog SET' exists already")
    error.locator("button", has_text="Use dog SET 2").click()
    expect(page.locator("#create-name")).to_have_value("dog SET 2")
    assert page.url.rstrip("/") == studio.datasets  # still here: nothing was made


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_job_trains_on_several_datasets_each_with_its_repeats(studio, page, viewport, artifacts_dir):
    from playwright.sync_api import expect

    page.goto(studio.trainer + "/new?dataset=my-cat")
    expect(page.locator("#est-images")).to_have_text("7")
    expect(page.locator("#mix")).to_be_hidden()
    expect(page.locator(".dataset-pick", has_text="my-cat").locator(".dataset-add")).to_be_hidden()
    page.locator(".dataset-pick", has_text="dog-set").locator(".dataset-add").click()
    expect(page.locator(".dataset-card.selected")).to_have_count(2)
    rows = page.locator("#mix tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("my-cat")
    expect(page.locator("#mix")).to_contain_text("dog-set keeps its own trigger word dogz: one LoRA that learns "
                                                 "mycat and it.")
    # its concept gets a preview prompt of its own in one click
    page.locator("[data-prompt-for='dogz']").click()
    expect(page.locator("#f-sample_prompts")).to_have_value(re.compile(r"\ndogz a portrait photo, soft window light$"))
    expect(page.locator("[data-prompt-for='dogz']")).to_have_count(0)
    expect(page.locator("#est-images")).not_to_have_text("7")  # checked together
    dogs = int(page.locator("#est-images").inner_text()) - 7
    page.fill("[data-repeats='dog-set']", "3")
    expect(rows.last.locator("[data-epoch]")).to_have_text(f"{dogs * 3} an epoch")
    expect(page.locator("#mix-epoch")).to_have_text(f"Each epoch trains on {7 + dogs * 3} images")
    expect(page.locator("#start")).to_be_enabled()
    # the trigger word and the LoRA name still follow the first dataset
    expect(page.locator("#f-trigger_word")).to_have_value("mycat")
    assert_no_sideways_scroll(page)
    page.screenshot(path=str(artifacts_dir / f"new-job-mix-{viewport['width']}.png"), full_page=True)

    page.fill("#f-job-name", f"mix {viewport['width']}")
    page.locator("#f-webhook").evaluate("(el) => { el.value = 'https://discord.com/api/webhooks/1/SECRET-TOKEN'; }")
    page.click("#start")
    page.wait_for_url("**/jobs/*")
    expect(page.locator("#job-sub")).to_contain_text("my-cat + dog-set ×3")
    job_id = page.url.rsplit("/", 1)[-1]
    job = studio.store().get(job_id)
    assert [(d["name"], d["repeats"]) for d in job.datasets] == [("my-cat", 1), ("dog-set", 3)]
    # its copy trains on the same mix; removing the first dataset leaves the other one
    page.goto(f"{studio.trainer}/new?from={job_id}")
    expect(page.locator("[data-repeats='dog-set']")).to_have_value("3")
    page.locator("[data-unmix='my-cat']").click()
    expect(page.locator("#mix")).to_be_hidden()
    expect(page.locator(".dataset-card.selected")).to_have_count(1)
    expect(page.locator(".dataset-card.selected")).to_contain_text("dog-set")
    expect(page.locator("#f-trigger_word")).to_have_value("mycat")  # a copy keeps the config it copied
    # and its webhook, whose token the page is never shown
    expect(page.locator("#f-webhook")).to_have_value("")
    expect(page.locator("#f-webhook")).to_have_attribute("placeholder", re.compile(r"^https://discord\.com/… \(the"))
    assert "SECRET-TOKEN" not in page.content()
    # or leaves it out: the copy sends to no address of the copied job's
    page.locator("#advanced").evaluate("(el) => { el.open = true; }")
    page.click("#f-webhook-drop")
    expect(page.locator("#f-webhook")).to_have_attribute("placeholder", re.compile(r"^https://example\.com/"))
    expect(page.locator("#f-webhook-drop")).to_have_count(0)
    page.fill("#f-job-name", f"mix copy {viewport['width']}")
    expect(page.locator("#start")).to_be_enabled()
    page.click("#start")
    page.wait_for_url(re.compile(r".*/jobs/(?!" + job_id + ").*"))
    copy_id = page.url.rsplit("/", 1)[-1]
    assert studio.store().get(copy_id).webhook_url is None
    for stopped in (job_id, copy_id):
        studio.store().request_stop(stopped)  # out of the other tests' way


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_job_starts_from_a_library_lora_of_its_own_shape(studio, page, viewport):
    from playwright.sync_api import expect
    from safetensors.numpy import save_file

    tensors = {}
    for i in range(2):
        for module in ("to_q", "to_k", "to_v", "to_out.0"):
            tensors[f"diffusion_model.layers.{i}.attention.{module}.lora_A.weight"] = np.zeros((8, 16), np.float32)
            tensors[f"diffusion_model.layers.{i}.attention.{module}.lora_B.weight"] = np.zeros((16, 8), np.float32)
    path = studio.workspace.loras / "cat-attention.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"lora_targets": "attention", "trigger_word": "mycat",
                                            "trigger_words": '["mycat", "dogz"]'})
    try:
        page.goto(studio.trainer + "/new?dataset=my-cat")
        page.locator("#advanced > summary").click()
        expect(page.locator("#library-loras option[value='cat-attention']")).to_have_count(1)
        page.fill("#f-init_lora", "cat-attention")
        page.locator("#f-init_lora").dispatch_event("change")  # what picking it from the list does
        expect(page.locator("#f-rank")).to_have_value("8")
        expect(page.locator("#f-lora_targets")).to_have_value("attention")

        expect(page.locator("#f-lora_targets")).to_have_value("attention")
        expect(page.locator(".toast").last).to_contain_text("LoRA rank 8 and layers attention, as cat-attention was")
        expect(page.locator("#start")).to_be_enabled()
        assert '"init_lora": "cat-attention"' in page.locator("#config-text").input_value()
        page.fill("#f-rank", "16")  # another rank cannot go on from it
        expect(page.locator("#err-init_lora")).to_contain_text("has rank 8, not 16: set the LoRA rank to 8")
        expect(page.locator("#start")).to_be_disabled()

        # the library's "Train further" opens the form that way
        page.goto(studio.trainer + "/library")
        card = page.locator(".lora-card", has_text="cat-attention")
        expect(card.locator(".chip")).to_have_text(["mycat", "dogz"])  # a LoRA of two concepts: both words
        # "Make smaller" is offered from the file's own rank (8: ranks 4, 2, 1), and its menu stays on screen
        card.locator(".smaller > summary").click()
        expect(card.locator(".smaller button[data-rank]")).to_have_text([re.compile(r"^rank 4"), re.compile(r"^rank 2"),
                                                                          re.compile(r"^rank 1")])
        expect(card.locator("button[data-rank='2']")).to_contain_text("keeps 100%")  # a zero LoRA keeps all of nothing
        box = card.locator(".smaller-menu").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] and box["y"] >= 0, box
        assert_no_sideways_scroll(page)
        card.locator(".smaller > summary").click()
        card.get_by_role("link", name="Train further").click()
        page.wait_for_url("**/new?start=cat-attention")
        expect(page.locator("#advanced")).to_have_attribute("open", "")
        expect(page.locator("#f-init_lora")).to_have_value("cat-attention")
        expect(page.locator("#f-rank")).to_have_value("8")
    finally:
        path.unlink()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_lokr_of_the_library_is_trained_further_as_a_lokr(studio, page, viewport, artifacts_dir):
    from playwright.sync_api import expect
    from safetensors.numpy import save_file

    tensors, rng = {}, np.random.default_rng(0)  # factor 4 splits the tiny model's 64-wide attention: 4x4, 16x16
    for i in range(2):
        for module in ("to_q", "to_k", "to_v", "to_out.0"):
            key = f"diffusion_model.layers.{i}.attention.{module}"
            tensors[f"{key}.lokr_w1"] = rng.normal(size=(4, 4)).astype(np.float32)
            tensors[f"{key}.lokr_w2"] = (rng.normal(size=(16, 16)) * 0.5 ** np.arange(16.0)).astype(np.float32)
    path = studio.workspace.loras / "cat-kron.safetensors"
    save_file(tensors, str(path), metadata={"lora_targets": "attention"})
    try:
        page.goto(studio.trainer + "/library")
        card = page.locator(".lora-card").filter(has=page.locator("h3", has_text=re.compile(r"^cat-kron$")))
        expect(card).to_contain_text("a LyCORIS LoKr, factor 4")
        smaller = card.locator("details[data-kind='smaller']")
        smaller.locator("summary").click()  # made smaller through its larger factors (16x16: 8, 4, 2)
        expect(smaller.locator("button")).to_have_text([re.compile(r"^rank 8"), re.compile(r"^rank 4"),
                                                        re.compile(r"^rank 2")])
        smaller.locator("button[data-rank='4']").click()
        expect(page.locator(".toast").last).to_contain_text("cat-kron-r4.safetensors: ")
        copy = page.locator(".lora-card", has_text="cat-kron-r4")
        expect(copy).to_contain_text(re.compile(r"cat-kron\.safetensors at rank 4, keeping [\d.]+% of its change"))
        expect(copy).to_contain_text("a LyCORIS LoKr, factor 4")  # its split unchanged: it trains further too
        # Save as a LoRA, for sites and tools that load LoRAs only: each rank says what it keeps before one is picked
        as_lora = card.locator("details[data-kind='as-lora']")
        as_lora.locator("summary").click()
        expect(as_lora.locator("button")).to_have_text([re.compile(r"^rank 64"), re.compile(r"^rank 32"),
                                                        re.compile(r"^rank 16")])
        expect(as_lora.locator("button[data-rank='64']")).to_contain_text("keeps 100%")  # the layers' full rank
        expect(as_lora.locator("button[data-rank='16']")).to_contain_text(re.compile(r"keeps [\d.]+%"))
        box = as_lora.locator(".smaller-menu").bounding_box()  # on screen on a phone too
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        assert_no_sideways_scroll(page)
        assert page.evaluate("""[...document.querySelectorAll('.lora-card')].every(card => {
            const edge = card.getBoundingClientRect().right;
            return [...card.querySelectorAll('.buttons > *')].every(
                b => b.getBoundingClientRect().right <= edge); })""")
        card.screenshot(path=str(artifacts_dir / f"library-lokr-as-lora-{viewport['width']}.png"))
        as_lora.locator("button[data-rank='32']").click()
        expect(page.locator(".toast").last).to_contain_text("cat-kron-lora-r32.safetensors: a LoRA of rank 32")
        lora_copy = page.locator(".lora-card", has_text="cat-kron-lora-r32")
        expect(lora_copy).to_contain_text(re.compile(r"LoRA copy of cat-kron\.safetensors at rank 32, keeping [\d.]+%"))
        expect(lora_copy.locator("details[data-kind='as-lora']")).to_have_count(0)
        # a LoKr merges at a rank only: with it in the list, the exact merge is not offered
        card.locator("button[data-merge]").click()
        expect(page.locator("#merge-rows select").first).to_have_value("cat-kron")
        expect(page.locator("#merge-rank")).to_have_value("64")
        expect(page.locator("#merge-rank option[value='']")).to_be_disabled()
        page.select_option("#merge-rows .merge-row:first-child select", "cat-kron-lora-r32")
        expect(page.locator("#merge-rank option[value='']")).to_be_enabled()
        card.get_by_role("link", name="Train further").click()
        page.wait_for_url("**/new?start=cat-kron")
        expect(page.locator("#f-network")).to_have_value("lokr")
        expect(page.locator("#f-lokr_factor")).to_have_value("4")
        expect(page.locator(".toast").last).to_contain_text("LoKr factor 4 and layers attention, as cat-kron was")
        expect(page.locator("[data-field='rank']")).to_be_hidden()  # a LoKr's size is its factor
        page.locator(".dataset-card", has_text="my-cat").click()
        expect(page.locator("#start")).to_be_enabled()
        expect(page.locator("#err-init_lora")).to_have_text("")
        page.select_option("#f-network", "lora")  # back to a LoRA: its rank again, and the file no longer fits
        expect(page.locator("[data-field='lokr_factor']")).to_be_hidden()
        expect(page.locator("#f-rank")).to_be_visible()
        expect(page.locator("#err-init_lora")).to_contain_text("cat-kron is a LyCORIS LoKr: set Network to lokr")
        expect(page.locator("#start")).to_be_disabled()
    finally:
        path.unlink()
        path.with_name("cat-kron-r4.safetensors").unlink(missing_ok=True)
        path.with_name("cat-kron-lora-r32.safetensors").unlink(missing_ok=True)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_variants_of_one_setting_are_queued_and_compared(studio, page, viewport, artifacts_dir):
    from playwright.sync_api import expect

    page.goto(studio.trainer + "/new?dataset=dog-set")
    page.fill("#f-job-name", f"dogs {viewport['width']}")
    page.locator("#variants > summary").click()
    page.select_option("#vary-field", "rank")
    expect(page.locator("#vary-values")).to_have_value("16, 32, 64")  # half, as is, double
    page.fill("#vary-values", "8, 0")
    page.click("#vary-start")
    expect(page.locator("#vary-note")).to_contain_text("Not queued: LoRA rank 0:")
    page.locator("#f-job-name").dispatch_event("input")  # the form checks itself again: the note stays
    expect(page.locator("#job-form[data-checking]")).to_have_count(0)
    expect(page.locator("#vary-note")).to_contain_text("Not queued: LoRA rank 0:")
    expect(page.locator("#start")).to_be_enabled()  # the job in the form is fine: only the variant is not
    assert not [job for job in studio.store().queue() if "·" in job.name]  # none queued
    page.select_option("#vary-field", "preserve_class")  # does keeping the class pay? off beside on
    expect(page.locator("#vary-values")).to_have_value("(none), person")
    expect(page.locator("#vary-help")).to_contain_text("(none) for empty")
    expect(page.locator("#vary-start")).to_have_text("Queue 2 variants")
    page.select_option("#vary-field", "learning_rate")
    page.fill("#vary-values", "1e-4, 5e-4, abc")  # a word where a number belongs is named, and nothing queues
    expect(page.locator("#vary-note")).to_have_text("Not a number: abc.")
    expect(page.locator("#vary-start")).to_be_disabled()
    page.fill("#vary-values", "0,0001, 0,0002")  # decimal commas: not the values 0, 1, 0 and 2
    expect(page.locator("#vary-note")).to_have_text("Not a number: 0,… (write decimals with a dot).")
    page.fill("#vary-values", "0x10, 1e-4")
    expect(page.locator("#vary-note")).to_have_text("Not a number: 0x10.")
    page.select_option("#vary-field", "rank")
    page.select_option("#vary-field", "learning_rate")
    expect(page.locator("#vary-values")).to_have_value("0.00005, 0.0001, 0.0002")
    expect(page.locator("#vary-start")).to_have_text("Queue 3 variants")
    assert_no_sideways_scroll(page)
    page.screenshot(path=str(artifacts_dir / f"new-job-variants-{viewport['width']}.png"), full_page=True)
    page.click("#vary-start")
    page.wait_for_url("**/compare?jobs=*")
    expect(page.locator("#compare-settings td:first-child", has_text="Learning rate")).to_have_count(1)
    for value in ("5e-05", "0.0001", "0.0002"):
        expect(page.locator("#compare-settings")).to_contain_text(f"dogs {viewport['width']} · Learning rate {value}")
    expect(page.locator("#compare-settings tr", has_text="Status")).to_contain_text("queued")
    assert_no_sideways_scroll(page)
    page.screenshot(path=str(artifacts_dir / f"compare-variants-{viewport['width']}.png"), full_page=True)
    for job_id in page.url.split("jobs=")[1].split(","):
        studio.store().request_stop(job_id)  # out of the other tests' way


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_job_log_reads_cleanly_and_the_worker_chip_follows_the_job(studio, page, viewport):
    from playwright.sync_api import expect

    # the seeded log: tqdm redraws collapse to their last state, one line each, no bar characters
    page.goto(f"{studio.trainer}/jobs/{studio.job_id}")
    log = page.locator("#log")
    expect(log).to_have_text("[2026-12-01 10:00:00] worker 4242: starting attempt 1\n"
                             "Loading pipeline components...: 100% (3/3, 00:00)\n"
                             "dataset my-cat: 7 images\n"
                             "Caching latents: 100% (2/2, 00:02)\n"
                             "Writing model shards: 100% (3/3, 00:01)\n"
                             "step 1/10 loss 0.4210")
    assert_no_sideways_scroll(page)

    # a queued job shows a placeholder, which never ends up glued to the log's first line
    job = studio.api(studio.trainer, "/api/jobs", {"name": f"chip {viewport['width']}", "dataset": "dog-set",
                                                   "config": {"steps": 10}})["job"]
    page.goto(f"{studio.trainer}/jobs/{job['id']}")
    expect(log).to_have_text("Waiting for the worker…")
    expect(log).to_have_class("log log-placeholder")
    folder = studio.workspace.jobs / job["id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.txt").write_text("[2026-12-01 10:05:00] worker 1: starting attempt 1\n", "utf-8")
    store = studio.store()
    pid = os.getpid()  # stands in for a worker: alive, and it owns the job
    try:
        store.start(job["id"], process_token())
        store.worker_beat(pid, "busy", job["id"])
        expect(log).to_have_text("[2026-12-01 10:05:00] worker 1: starting attempt 1")
        expect(page.locator("#worker-chip")).to_have_text("worker busy", timeout=8000)
        # on a pod with several GPUs the job page names the job's GPU
        store.progress(job["id"], {"gpu": "1"})
        expect(page.locator("#job-sub")).to_contain_text("GPU 1", timeout=8000)
        # the job ends; the worker's row still says busy until its next beat, the chip does not
        store.finish(job["id"], "completed", message="Finished 10 steps.")
        expect(page.locator("#job-status .status")).to_have_text("completed")
        expect(page.locator("#worker-chip")).to_have_text("worker idle", timeout=3000)
        page.goto(studio.trainer + "/")
        expect(page.locator("#worker-chip")).to_have_text("worker idle")
        assert_no_sideways_scroll(page)
        # a pod with two GPUs runs a worker for each: the chip counts them, and the busy ones
        store.worker_beat(os.getppid(), "busy", "some-job")
        expect(page.locator("#worker-chip")).to_have_text("2 workers · 1 busy", timeout=8000)
    finally:
        store.worker_gone(pid)
        store.worker_gone(os.getppid())


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_gallery_flags_export_and_the_trainer_link(studio, page, viewport):
    from playwright.sync_api import expect

    datasets_port, trainer_port = studio.datasets.rsplit(":", 1)[1], studio.trainer.rsplit(":", 1)[1]
    page.goto(f"{studio.datasets}/d/{studio.dataset_id}")
    expect(page.locator('.tile[data-name="tiny.png"] .badge.small-badge')).to_have_text("small: 320×240, below 512 px")
    expect(page.locator('.tile[data-name="dup.png"] .badge.err')).to_have_text("duplicate")
    expect(page.locator("#flag-actions button")).to_have_text(["Remove 1 duplicate", "Remove 1 small image"])
    page.locator("#flag-actions button[data-remove='small']").click()
    expect(page.locator("#confirm-text")).to_have_text("Each image with a short side below 512 px is removed with its "
                                                       "caption. They stay in Recently deleted for a week.")
    page.locator("#confirm-dialog [data-close]").click()
    # the top bar: Trainer opens a job on this dataset's export; Express goes to the dataset manager's page
    expect(page.locator('.tool-link[data-tool="trainer"]')).to_have_attribute(
        "href", f"http://127.0.0.1:{trainer_port}/new?dataset=my-cat")
    assert page.locator('.tool-link[data-path="express"]').evaluate("(a) => a.href") == studio.datasets + "/express"

    page.click("#btn-export")
    expect(page.locator("#export-dupes-text")).to_have_text(
        "1 exact duplicate flagged in the gallery is left out: each picture is exported once.")
    page.click("#export-start")
    expect(page.locator("#export-result")).to_contain_text("Exported 7 images")
    expect(page.locator("#export-result")).to_contain_text("left out 1 exact duplicate (dup.png)")
    expect(page.locator("#export-train-link")).to_have_attribute(
        "href", f"http://127.0.0.1:{trainer_port}/new?dataset=my-cat")
    assert_no_sideways_scroll(page)
    page.click("#export-dialog [data-close]")

    # uncaptioned images: the dialog offers to caption them
    page.click("#btn-autocaption")
    expect(page.locator("#cap-start")).to_have_text("Caption 8 images")
    expect(page.locator("#cap-all-done")).to_be_hidden()
    page.click("#caption-dialog [data-close]")

    page.goto(f"{studio.trainer}/")
    assert page.locator('.tool-link[data-path="express"]').evaluate("(a) => a.href") == \
        f"http://127.0.0.1:{datasets_port}/express"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_caption_dialog_when_every_image_has_a_caption(studio, page, viewport):
    from playwright.sync_api import expect

    dog = "dog-set"
    for image in studio.api(studio.datasets, f"/api/datasets/{dog}/images")["images"]:
        studio.api(studio.datasets, f"/api/datasets/{dog}/captions/{image['name']}", {"caption": "a dog"}, "PUT")
    page.goto(f"{studio.datasets}/d/{dog}")
    expect(page.locator("#count-uncaptioned")).to_have_text("0")
    page.click("#btn-autocaption")
    count = page.locator(".tile").count()
    expect(page.locator("#cap-all-done")).to_contain_text(f"All {count} images have a caption.")
    expect(page.locator("#cap-start")).to_have_text(f"Re-caption all {count} (replace)")
    expect(page.locator("#cap-mode")).to_have_value("overwrite")
    assert page.locator('#cap-mode option[value="skip"]').is_disabled()
    assert_no_sideways_scroll(page)
    if viewport["width"] < 520:  # a phone: each choice a line of its own, its words not cut off
        for select in ("#cap-mode", "#cap-style"):
            assert page.locator(select).bounding_box()["width"] > 0.7 * viewport["width"], select


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_finished_panels_and_toasts_step_aside(studio, page, viewport, tmp_path):
    from playwright.sync_api import expect

    photo = tmp_path / f"new dog {viewport['width']}.png"
    photo.write_bytes(image_bytes(viewport["width"], size=(600, 600)))
    page.goto(f"{studio.datasets}/d/dog-set")
    expect(page.locator(".tile").first).to_be_visible()
    page.set_input_files("#file-input", str(photo))
    expect(page.locator("#import-status")).to_contain_text("Imported 1 image")
    # after a few seconds the finished panel is one line; a click on it shows the details again
    expect(page.locator("#uploads")).to_have_class("uploads open compact", timeout=10_000)
    expect(page.locator("#uploads-title")).to_contain_text("✓ Imported 1 image")
    assert page.locator("#uploads").bounding_box()["height"] < 60
    page.click("#uploads-title")
    expect(page.locator("#import-status")).to_be_visible()
    page.click("#uploads-close")
    expect(page.locator("#uploads")).to_be_hidden()

    # toasts let clicks through around them, go by themselves soon, and a click dismisses one
    assert page.evaluate("getComputedStyle(document.getElementById('toasts')).pointerEvents") == "none"
    page.evaluate("studio.toast('Caption saved.', 'ok', 60000)")
    expect(page.locator(".toast")).to_have_count(1)
    expect(page.locator(".toast")).to_have_count(0, timeout=5000)
    page.evaluate("studio.toast('Something failed.', 'error')")
    page.click(".toast")
    expect(page.locator(".toast")).to_have_count(0, timeout=1000)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_queued_job_can_run_next(studio, page, viewport):
    from playwright.sync_api import expect

    made = [studio.api(studio.trainer, "/api/jobs", {"name": f"{which} {viewport['width']}", "dataset": "dog-set",
                                                     "config": {"steps": 10}})["job"]
            for which in ("first", "second")]
    page.goto(studio.trainer + "/")
    rows = page.locator("#queue tr")
    expect(rows.last).to_contain_text(made[1]["name"])  # the queue's order: the last made, last
    rows.last.locator("[data-run-next]").click()
    expect(rows.first).to_contain_text(made[1]["name"])  # it starts when the running job ends
    expect(rows.first.locator("[data-run-next]")).to_have_count(0)
    assert [job.id for job in studio.store().queue()][0] == made[1]["id"]
    assert_no_sideways_scroll(page)
    for job in made:
        studio.store().request_stop(job["id"])  # out of the other tests' way


@pytest.mark.parametrize("viewport", VIEWPORTS[:1])
def test_the_storage_card_frees_the_training_state_nothing_uses(studio, page, viewport):
    from playwright.sync_api import expect

    job = studio.api(studio.trainer, "/api/jobs", {"name": "old run", "dataset": "dog-set",
                                                   "config": {"steps": 10}})["job"]
    studio.api(studio.trainer, "/api/storage/free-states", method="POST")  # nothing to free yet: measured afresh
    store = studio.store()
    store.start(job["id"], "1:x")
    store.finish(job["id"], "stopped", resumable=True)
    for step in (5, 10):
        folder = studio.workspace.jobs / job["id"] / "checkpoints" / f"step_{step:06d}"
        folder.mkdir(parents=True)
        (folder / "state.pt").write_bytes(b"s" * 3_000_000)
        (folder / "lora.safetensors").write_bytes(b"l" * 1000)
    page.goto(studio.trainer + "/")
    row = page.locator("#storage tr[data-part=freeable]")
    expect(row).to_contain_text("training state of 1 earlier checkpoint")
    expect(row.locator("#free-states")).to_have_text("Free 3.0 MB")
    row.locator("#free-states").click()
    expect(page.locator(".toast", has_text="Freed 3.0 MB from 1 checkpoint.")).to_be_visible()
    expect(row).to_have_count(0)
    assert (studio.workspace.jobs / job["id"] / "checkpoints" / "step_000010" / "state.pt").is_file()
    assert not (studio.workspace.jobs / job["id"] / "checkpoints" / "step_000005" / "state.pt").exists()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_caption_words_show_what_the_captions_share(studio, page, viewport, artifacts_dir):
    from playwright.sync_api import expect

    dataset_id = studio.extra.get("words")
    if not dataset_id:
        dataset_id = studio.extra["words"] = browser_studio._seed_dataset(
            studio.datasets, "Words", "wrd", [(f"w{i}.png", image_bytes(40 + i, size=(600, 600))) for i in range(4)],
            "words-set")
        for i, caption in enumerate(["wrd, a woman, red hair, smiling", "wrd, woman, red hair, outdoors",
                                     "woman, red hair, smiling", "wrd, woman at the beach"]):
            studio.api(studio.datasets, f"/api/datasets/{dataset_id}/captions/w{i}.png", {"caption": caption}, "PUT")
    page.goto(f"{studio.datasets}/d/{dataset_id}")
    page.click("#btn-words")
    rows = page.locator("#words-list .word-row")
    expect(rows.first).to_contain_text("woman")
    expect(rows.first).to_contain_text("4 of 4")
    expect(rows.first).to_have_class(re.compile(r"\bcommon\b"))  # in almost every caption: marked
    expect(page.locator("#words-summary")).to_have_text(
        "4 captioned images of 4. The trigger word wrd is in 3 of them; Export adds it to the other 1.")
    page.locator("#words-tabs [data-words='phrases']").click()
    expect(rows.first).to_contain_text("red hair")
    expect(rows.first).to_contain_text("3 of 4")
    assert_no_sideways_scroll(page)
    page.screenshot(path=str(artifacts_dir / f"caption-words-{viewport['width']}.png"))
    # Remove opens Find & replace with the phrase and its comma, previewed before anything changes
    rows.first.locator("[data-remove]").click()
    expect(page.locator("#replace-dialog")).to_be_visible()
    expect(page.locator("#find-regex")).to_be_checked()
    expect(page.locator("#replace-summary")).to_have_text("3 matches in 3 captions")
    page.locator("#replace-dialog [data-close]").click()
    # a word shows its images
    page.click("#btn-words")
    page.locator("#words-tabs [data-words='words']").click()
    page.locator("#words-list [data-search='smiling']").click()
    expect(page.locator("#search")).to_have_value("smiling")
    expect(page.locator("#grid .tile")).to_have_count(2)
