"""Browser test: the real web app and worker (subprocesses) in demo mode, driven through chromium.

Creates a job from the form on the tiny model, watches the progress bar move and the loss chart draw,
sees a sample image, and downloads the LoRA. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest

from tests.browser_studio import ARGS, CHROMIUM, NOTIFICATIONS, browser_marks, watch_page
from tests.helpers import REPO, ServerProcess, free_port
from tests.test_trainer_worker import make_export

pytestmark = browser_marks

# Records every width the progress bar takes, so the test sees it move even between its own looks.
RECORD_PROGRESS = """() => {
  window.__widths = [];
  const bar = document.querySelector('#progress > div');
  const note = () => window.__widths.push(parseFloat(bar.style.width) || 0);
  note();
  new MutationObserver(note).observe(bar, {attributes: true, attributeFilter: ['style']});
}"""


@pytest.fixture
def studio(demo_root, tmp_path):
    make_export(demo_root, "tiny-set", count=4)
    env = {"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "TRAINER_PORT": str(free_port()),
           "CAPTION_URL": "http://127.0.0.1:9", "PYTHONPATH": str(REPO), "GPU_PRICE_PER_HOUR": "2.5"}
    web = ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log").start()
    worker = subprocess.Popen([sys.executable, "-m", "trainer.worker"], cwd=REPO, env={**os.environ, **env},
                              stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT)
    try:
        yield web.url
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        web.stop()


def test_train_from_the_form_and_download_the_lora(studio, artifacts_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.add_init_script(NOTIFICATIONS)
        problems = watch_page(page)
        page.set_default_timeout(30_000)
        page.goto(studio + "/new")
        page.locator(".dataset-card", has_text="tiny-set").click()
        expect(page.locator(".dataset-card.selected")).to_contain_text("4 images")
        expect(page.locator(".dataset-card .thumbs img")).to_have_count(4)
        # a memory preset sets several fields at once
        page.locator("[data-preset='16gb']").click()
        expect(page.locator("#f-quantize_base")).to_have_value("float8")
        expect(page.locator("#f-resolutions")).to_have_value("512")
        # a bad value is reported next to its field
        page.fill("#f-steps", "0")
        expect(page.locator("#err-steps")).to_contain_text("at least 1")
        expect(page.locator("#problems")).to_contain_text("Steps: Must be at least 1.")  # as the form labels it
        expect(page.locator("#est-device")).to_have_text("No estimate while a setting above is invalid.")
        expect(page.locator("#start")).to_be_disabled()
        page.fill("#f-job-name", "browser job")
        page.fill("#f-name", "browser-lora")
        page.fill("#f-steps", "240")  # long enough (about 10 s here) for the page to see it part-way
        page.fill("#f-rank", "4")
        # Prodigy's rate (a multiplier, 1) and AdamW's (1e-4) follow the optimizer unless typed by hand
        page.locator("#advanced > summary").click()
        page.select_option("#f-optimizer", "prodigy")
        expect(page.locator("#f-learning_rate")).to_have_value("1")
        page.fill("#f-learning_rate", "0.0001")  # a rate meant for AdamW: the form says so
        expect(page.locator("#problems")).to_contain_text("With Prodigy the learning rate multiplies")
        page.fill("#f-learning_rate", "1")
        expect(page.locator("#problems")).not_to_contain_text("With Prodigy")
        page.select_option("#f-optimizer", "auto")
        expect(page.locator("#f-learning_rate")).to_have_value("0.0001")
        page.locator("#advanced > summary").click()
        page.fill("#f-learning_rate", "0.001")
        page.fill("#f-resolutions", "64")
        page.fill("#f-sample_prompts", "tok, a red circle\ntok, a blue square --w 96 --d 5")  # kohya's options
        page.locator("#advanced > summary").click()
        for field, value in (("sample_every", "80"), ("save_every", "120"), ("sample_width", "64"),
                             ("sample_height", "64"), ("sample_steps", "2"), ("warmup_steps", "20")):
            page.fill(f"#f-{field}", value)
        expect(page.locator("#err-steps")).to_be_empty()
        expect(page.locator("#start")).to_be_enabled()
        expect(page.locator("#est-time")).to_contain_text("≈")
        # preserve_class: its field, and the estimate counts its extra passes
        expect(page.locator("label[for='f-preserve_class']")).to_have_text("Preserve the class")
        expect(page.locator("#job-form")).not_to_have_attribute("data-checking", "1")  # the form's answer is in
        plain_estimate = page.locator("#est-time").inner_text()
        page.fill("#f-preserve_class", "person")
        expect(page.locator("#est-time")).not_to_have_text(plain_estimate)
        page.fill("#f-preserve_class", "")
        expect(page.locator("#est-time")).to_have_text(plain_estimate)
        # the JSON view shows the same config
        config = json.loads(page.locator("#config-text").input_value())
        assert config["steps"] == 240 and config["resolutions"] == [64] and config["sample_every"] == 80
        assert list(config)[:3] == ["name", "trigger_word", "steps"]  # the form's order
        page.locator("[data-format='yaml']").click()
        page.wait_for_function("document.querySelector('#config-text').value.includes('steps: 240')")
        page.screenshot(path=str(artifacts_dir / "trainer-new-job.png"), full_page=True)

        page.locator("#start").dblclick()  # a double-click must create one job
        page.wait_for_url("**/jobs/*")
        jobs = json.loads(urllib.request.urlopen(studio + "/api/jobs").read())["jobs"]
        assert len(jobs) == 1
        page.wait_for_selector("#progress > div")
        page.evaluate(RECORD_PROGRESS)
        # a desktop notification when it ends, asked for once
        page.locator("#btn-notify").click()
        expect(page.locator("#btn-notify")).to_have_text("Notifying ✓")

        # while it trains: the bar stands part-way and the chart has points
        page.wait_for_function("window.__widths.some(w => w > 0 && w < 100)", timeout=180_000)
        page.wait_for_function("Number(document.querySelector('#loss-chart').dataset.points || 0) >= 2",
                               timeout=180_000)
        page.wait_for_selector(".gallery-row img", timeout=180_000)
        page.wait_for_function("[...document.querySelectorAll('.gallery-row img')].some(i => i.naturalWidth > 0)")
        page.screenshot(path=str(artifacts_dir / "trainer-job-running.png"), full_page=True)
        expect(page.locator("#job-status .status")).to_have_text("completed", timeout=240_000)
        expect(page).to_have_title("✓ browser job · Trainer")  # the tab says it is done
        expect(page.locator("#s-cost")).to_have_text(re.compile(r"^≈ (<\$0\.01|\$0\.\d\d)$"))  # a $2.50/h machine
        assert page.locator("#s-cost").get_attribute("title") == "At $2.50/h (GPU_PRICE_PER_HOUR)"
        expect(page.locator("#job-sub")).to_contain_text("tiny-set · zimage-turbo · on CPU")  # a pod: the GPU's name
        assert page.evaluate("window.__notes") == [{"title": "✓ browser job: completed",
                                                    "tag": "notify:" + jobs[0]["id"]}]
        expect(page.locator("#btn-notify")).to_be_hidden()
        widths = page.evaluate("window.__widths")
        moving = [w for w in widths if 0 < w < 100]
        assert widths[-1] == 100 and len(set(moving)) >= 1, widths
        expect(page.locator("#log")).to_contain_text("tiny-set")
        expect(page.locator("#checkpoints a")).not_to_have_count(0)
        # each prompt shows the base (LoRA off) beside the LoRA; the speed box shows the step-time split
        expect(page.locator("#samples .triple")).not_to_have_count(0)
        # under a triple: how much of the LoRA's change its picture keeps without the trigger word
        expect(page.locator("#samples .triple .leak").first).to_have_text(
            re.compile(r"^Without the trigger word: \d+% of the LoRA's change( \(it leaks\))?$"))
        expect(page.locator("#samples .triple").first.locator("img")).not_to_have_count(0)
        expect(page.locator("#samples .triple").first).to_contain_text("Base (LoRA off)")
        # previews load as small files; a click opens the full picture
        first = page.locator("#samples .triple img").first
        expect(first).to_have_attribute("src", re.compile(r"\.png\?thumb=1$"))
        first.click()
        expect(page.locator(".lightbox img")).to_have_attribute("src", re.compile(r"/samples/.+\.png$"))
        page.wait_for_function("document.querySelector('.lightbox img').naturalWidth > 0")
        page.locator(".lightbox").click()
        # and with the keyboard: Tab to a picture, Enter opens it, Escape closes it and the focus is back on it
        first.focus()
        page.keyboard.press("Enter")
        expect(page.locator(".lightbox img")).to_have_attribute("src", re.compile(r"/samples/.+\.png$"))
        page.keyboard.press("Escape")
        expect(page.locator(".lightbox")).to_have_count(0)
        assert first.evaluate("i => i === document.activeElement")
        expect(page.locator("#s-split")).to_contain_text("ms/step")
        expect(page.locator("#s-lr")).to_have_text("learning rate: 0.001")
        # a prompt with its own size and seed says so above its pictures, which have that size
        expect(page.locator("#samples .triple .prompt-options").first).to_have_text("(96×64 · seed 5)")
        wide = page.locator("#samples .triple", has_text="a blue square").first.locator("img").first
        assert wide.evaluate("i => i.naturalWidth / i.naturalHeight") == 1.5
        # the loss tile shows the dashboard's figure (smoothed) and the latest step's loss under it
        expect(page.locator("#s-loss-raw")).to_contain_text("latest step: ")
        assert page.locator("#s-loss").inner_text() != "–"
        # the evaluation loss (before the first step and at each checkpoint) in its tile and the chart
        page.wait_for_function("document.querySelector('#loss-chart').dataset.evals === '3'")
        expect(page.locator("#s-eval-sub")).to_have_text("at step 240")
        assert re.fullmatch(r"\d+\.\d+", page.locator("#s-eval").inner_text())
        expect(page.locator("#chart-legend-evals")).to_contain_text("evaluation loss")
        # the warm-up's rising learning rate is drawn on its own scale, and named in the legend
        assert page.locator("#loss-chart").get_attribute("data-lr") == "1"
        expect(page.locator("#legend-lr")).to_be_visible()
        expect(page.locator("#legend-held")).to_be_hidden()
        expect(page.locator("#proof-grid")).to_be_visible()
        expect(page.locator("#proof-readme")).to_have_attribute("href", re.compile(r"lora/README\.txt$"))
        # the ComfyUI workflow downloads under the LoRA's name and loads this LoRA
        expect(page.locator("#proof-workflow")).to_have_attribute("download", "browser-lora-comfyui-workflow.json")
        graph = page.request.get(page.locator("#proof-workflow").evaluate("a => a.href")).json()
        assert {"LoraLoaderModelOnly", "KSampler"} <= {node["class_type"] for node in graph.values()}
        assert "browser-lora.safetensors" in json.dumps(graph)
        # watch it learn: a prompt's pictures in turn, base model first, as one animation in the lightbox
        expect(page.locator(".timelapse-line a")).to_have_text(["prompt 1", "prompt 2"])
        page.locator(".timelapse-line a").first.click()
        expect(page.locator(".lightbox img")).to_have_attribute("src", re.compile(r"/timelapse/0$"))
        page.wait_for_function("document.querySelector('.lightbox img').naturalWidth > 0")
        page.keyboard.press("Escape")  # closes it, as a click does
        expect(page.locator(".lightbox")).to_have_count(0)
        page.locator("[data-view='compare']").click()
        expect(page.locator(".compare img")).not_to_have_count(0)
        page.locator("[data-view='gallery']").click()
        expect(page.locator("#btn-sample")).to_be_hidden()  # Sample now and Save now only while it runs
        expect(page.locator("#btn-save")).to_be_hidden()
        page.screenshot(path=str(artifacts_dir / "trainer-job-completed.png"), full_page=True)

        with page.expect_download() as info:
            page.locator("#download-lora").click()
        download = info.value
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        assert target.name == "browser-lora.safetensors"
        data = target.read_bytes()
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        assert any(key.startswith("diffusion_model.layers.") for key in header)
        # everything the job made, in one ZIP, before the pod goes
        expect(page.locator("#btn-bundle")).to_have_text(re.compile(r"^Download all \(\d"))
        with page.expect_download() as info:
            page.locator("#btn-bundle").click()
        names = zipfile.ZipFile(info.value.path()).namelist()
        assert {"browser-lora/browser-lora.safetensors", "browser-lora/checkpoints/browser-lora-step120.safetensors",
                "browser-lora/comfyui_workflow.json", "browser-lora/log.txt"} <= set(names)

        # try the LoRA: one prompt and seed at the chosen strengths side by side, rendered by the worker
        page.locator("#try-link").click()  # beside the download
        expect(page.locator("#try-form")).to_be_in_viewport()
        # the checkpoint at step 120 (the one at 240 is the final LoRA), and every LoRA file side by side
        expect(page.locator("#try-lora option")).to_have_text(["Final LoRA (step 240)", "Checkpoint at step 120",
                                                              "Every checkpoint, side by side"])
        page.fill("#try-prompt", "[trigger], a blue square")
        page.locator("[data-strength='0.8']").click()  # off: Base and 1 stay
        page.locator("[data-strength='1.5']").click()
        expect(page.locator("#try-strengths .active")).to_have_text(["Base", "1", "1.5"])
        page.fill("#try-seed", "1234")
        page.locator("#try-go").click()
        card = page.locator(".try-card").first
        expect(card).to_contain_text("Rendered 3 images", timeout=120_000)
        expect(card.locator("figcaption")).to_have_text(["Base (LoRA off)", "LoRA 1", "LoRA 1.5"])
        page.wait_for_function("[...document.querySelectorAll('.try-card img')].every(i => i.naturalWidth > 0)")
        expect(card.locator(".try-meta").first).to_contain_text("seed 1234 · 64×64 · 2 steps · final LoRA (step 240)")
        expect(card.locator(".prompt")).to_have_text("tok, a blue square")
        card.locator("img").nth(1).click()  # full size in the lightbox
        expect(page.locator(".lightbox img")).to_have_attribute("src", re.compile(r"/renders/.+/1\.png$"))
        page.locator(".lightbox").click()
        page.locator("#try-panel").screenshot(path=str(artifacts_dir / "trainer-try-lora.png"))
        card.locator("[data-try-reroll]").click()  # the same render with a new seed, in one click
        expect(page.locator(".try-card")).to_have_count(2)
        rerolled = page.locator(".try-card").first
        expect(rerolled).to_contain_text("Rendered 3 images", timeout=120_000)
        expect(rerolled.locator(".prompt")).to_have_text("tok, a blue square")
        expect(rerolled.locator(".try-meta").first).to_contain_text("64×64 · 2 steps · final LoRA (step 240)")
        expect(rerolled.locator(".try-meta").first).not_to_contain_text("seed 1234 ")
        rerolled.locator("[data-try-delete]").click()
        expect(page.locator(".try-card")).to_have_count(1)
        # a render's settings go back into the form; a render can be deleted
        page.fill("#try-seed", "5")
        card.locator("[data-try-reuse]").click()
        expect(page.locator("#try-seed")).to_have_value("1234")
        expect(page.locator("#try-prompt")).to_have_value("tok, a blue square")
        card.locator("[data-try-delete]").click()
        expect(page.locator(".try-card")).to_have_count(0)
        # every checkpoint side by side: the base once, then each LoRA file in training order; at several
        # strengths, a row per file
        page.select_option("#try-lora", "all")
        page.locator("[data-strength='1.5']").click()  # Base and 1
        page.locator("#try-go").click()
        expect(card).to_contain_text("Rendered 3 images", timeout=120_000)
        expect(card.locator("figcaption")).to_have_text(["Base (LoRA off)", "checkpoint at step 120",
                                                         "final LoRA (step 240)"])
        expect(card.locator(".try-meta").first).to_contain_text("2 LoRA files, steps 120 to 240")
        page.wait_for_function("[...document.querySelectorAll('.try-card img')].every(i => i.naturalWidth > 0)")
        page.locator("[data-strength='0.8']").click()  # Base, 0.8 and 1
        page.fill("#try-seed", "99")
        page.locator("#try-prompt").press("Control+Enter")
        expect(card).to_contain_text("Rendered 5 images", timeout=120_000)
        expect(card.locator(".try-sweep-title span")).to_have_text(["Base model", "checkpoint at step 120",
                                                               "final LoRA (step 240)"])
        page.wait_for_function("[...document.querySelectorAll('.try-card img')].every(i => i.naturalWidth > 0)")
        page.locator("#try-panel").screenshot(path=str(artifacts_dir / "trainer-try-checkpoints.png"))
        # the checkpoint that looked best goes to the LoRA library under a name that says its step, from
        # its row in the sweep (or the checkpoint list)
        checkpoint = page.locator("#checkpoints tr", has_text="120")
        expect(checkpoint.locator("a", has_text="Download")).to_have_attribute("download",
                                                                              "browser-lora-step120.safetensors")
        expect(card.locator(".try-sweep-title [data-publish]")).to_have_count(1)  # the final LoRA is there already
        card.locator(".try-sweep-title [data-publish='120']").click()
        expect(checkpoint).to_contain_text("✓ browser-lora-step120.safetensors")

        # train more steps: a dialog says from where to where and about how long, then the same job goes on
        page.locator("#btn-continue").click()
        expect(page.locator("#continue-from")).to_have_text("240")
        page.fill("#continue-steps", "0")
        expect(page.locator("#continue-start")).to_be_disabled()
        page.fill("#continue-steps", "20")
        expect(page.locator("#continue-plan")).to_contain_text("From step 240 to 260: about")
        page.locator("#continue-start").click()
        expect(page.locator("#continue-dialog")).not_to_be_visible()
        expect(page.locator("#step-text")).to_have_text("step 260 / 260", timeout=120_000)
        expect(page.locator("#job-status .status")).to_have_text("completed", timeout=120_000)
        expect(page.locator("#btn-continue")).to_be_visible()

        page.goto(studio + "/library")
        expect(page.locator(".lora-card").first).to_contain_text("browser-lora.safetensors")
        expect(page.locator(".lora-card").nth(1)).to_contain_text("browser-lora-step120.safetensors")  # a checkpoint
        # which leads to its job (deleting the card would leave the job alone)
        expect(page.locator(".lora-card").nth(1)).to_contain_text("checkpoint at step 120 of browser job")
        expect(page.locator(".lora-card").nth(1).locator("a", has_text="Open job")).to_have_count(1)
        expect(page.locator(".lora-card .preview.pairs img")).not_to_have_count(0)
        expect(page.locator(".lora-card .preview.pairs img").first).to_have_attribute("src", re.compile(r"thumb=1$"))
        page.wait_for_function("[...document.querySelectorAll('.lora-card img')].every(i => i.naturalWidth > 0)")
        expect(page.locator(".lora-card .proof a")).not_to_have_count(0)
        expect(page.locator(".lora-card").first.locator(".leak")).to_contain_text("Without the trigger word: ")
        expect(page.locator(".lora-card .proof a", has_text="ComfyUI workflow")).to_have_attribute(
            "download", "browser-lora-comfyui-workflow.json")
        page.screenshot(path=str(artifacts_dir / "trainer-library.png"), full_page=True)
        # every button stays inside its card (five of them once wrapped past the card's edge)
        assert page.evaluate("""[...document.querySelectorAll('.lora-card')].every(card => {
            const edge = card.getBoundingClientRect().right;
            return [...card.querySelectorAll('.buttons > *')].every(
                b => b.getBoundingClientRect().right <= edge); })""")
        # a smaller copy at a lower rank, beside it in the library, saying how much of the change it keeps
        card = page.locator(".lora-card", has_text="browser-lora.safetensors").first
        card.locator(".smaller > summary").click()
        expect(card.locator(".smaller button[data-rank]")).to_have_count(2)  # rank 4: ranks 2 and 1
        card.locator(".smaller button[data-rank='2']").click()
        expect(page.locator(".toast", has_text="browser-lora-r2.safetensors")).to_contain_text("of the LoRA's change")
        expect(page.locator(".lora-card", has_text="browser-lora-r2.safetensors")).to_contain_text(
            re.compile(r"browser-lora\.safetensors at rank 2, keeping [\d.]+% of its change"))
        # "Try it" on a job's LoRA opens the job page at its Try the LoRA panel, ready to type
        page.locator(".lora-card a", has_text="Try it").first.click()
        page.wait_for_url("**/jobs/*#try-panel")
        expect(page.locator("#try-prompt")).to_be_focused()
        expect(page.locator("#try-panel")).to_be_in_viewport()
        page.goto(studio + "/")
        expect(page.locator("#recent tbody tr")).to_have_count(1)
        expect(page.locator("#storage-free")).to_contain_text("free of")
        expect(page.locator("#storage tr[data-part=jobs]")).to_contain_text("Training jobs")
        # idle; the render a moment ago keeps its model loaded a while, so the next one starts at once
        expect(page.locator("#worker-chip")).to_have_text(re.compile(r"^worker idle( · model loaded)?$"))
        time.sleep(0.3)
        page.screenshot(path=str(artifacts_dir / "trainer-dashboard.png"), full_page=True)

        # deleting from the library takes the file and the job it came from, after a confirmation
        page.goto(studio + "/library")
        for name in ("browser-lora-r2.safetensors", "browser-lora-step120.safetensors", "browser-lora.safetensors"):
            page.locator(".lora-card", has_text=name).first.locator("button[data-delete]").click()
            expect(page.locator("#confirm-title")).to_have_text(f"Delete {name}?")
            page.locator("#confirm-ok").click()
            expect(page.locator(".lora-card", has_text=name)).to_have_count(0)
        expect(page.locator("#library")).to_contain_text("No finished LoRA yet")
        # ... into Recently deleted, for 7 days: the job (checkpoints, previews) and the files come back as they were
        trash = page.locator("#trash li")
        expect(trash).to_have_count(4)  # three files and the job
        expect(page.locator("#trash li", has_text="training job")).to_contain_text("browser job")
        page.screenshot(path=str(artifacts_dir / "trainer-recently-deleted.png"), full_page=True)
        page.locator("#trash li", has_text="training job").locator("[data-restore]").click()
        # deleted together from its card, the job and its LoRA come back together
        expect(page.locator(".toast", has_text="browser job is back with its checkpoints and previews, and its LoRA "
                                               "in the library")).to_be_visible()
        expect(page.locator("#trash li", has_text="LoRA file").filter(has_text="browser-lora.safetensors")) \
            .to_have_count(0)
        card = page.locator(".lora-card", has_text="browser-lora.safetensors")
        expect(card).to_have_count(1)
        expect(card.locator("a", has_text="Open job")).to_have_count(1)  # its job is back too
        page.wait_for_function("[...document.querySelectorAll('.lora-card img')].every(i => i.naturalWidth > 0)")
        # Rename… on a trained LoRA's card: its file's new name, which its ComfyUI workflow then loads
        card.locator(".card-edit > summary").click()
        expect(card.locator("input[name=trigger_word]")).to_have_count(0)  # a job's trigger word is its own
        card.locator("input[name=name]").fill("browser lora v1")
        card.locator(".card-edit-form button[type=submit]").click()
        expect(page.locator(".toast", has_text="browser-lora-v1.safetensors, trigger tok: saved.")).to_be_visible()
        card = page.locator(".lora-card", has_text="browser-lora-v1.safetensors")
        expect(card.locator("h3")).to_have_text("browser-lora-v1")  # the card is named for its file now
        expect(card.locator("[data-trained-as]")).to_have_text("trained as the job browser job")
        workflow = card.locator(".proof a", has_text="ComfyUI workflow").get_attribute("href")
        graph = json.loads(urllib.request.urlopen(studio + workflow).read())
        assert [n["inputs"]["lora_name"] for n in graph.values() if n["class_type"] == "LoraLoaderModelOnly"] == \
            ["browser-lora-v1.safetensors"]
        page.locator("#trash-empty").click()
        page.locator("#confirm-ok").click()
        expect(page.locator("#trash")).to_be_hidden()
        card.locator("button[data-delete]").click()
        page.locator("#confirm-ok").click()
        expect(page.locator("#library")).to_contain_text("No finished LoRA yet")
        page.goto(studio + "/")
        expect(page.locator("#recent-empty")).to_be_visible()
        assert problems == []
        browser.close()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Origin": url.split("/api/")[0]})
    return json.loads(urllib.request.urlopen(request).read())


def test_compare_two_runs(studio, demo_root, artifacts_dir):
    """Two runs that differ in learning rate and rank: ticked on the dashboard, then their loss curves,
    what differs, and each prompt's latest previews side by side."""
    from playwright.sync_api import expect, sync_playwright

    config = {"trigger_word": "tok", "steps": 30, "rank": 4, "resolutions": [64], "sample_every": 15,
              "save_every": 15, "sample_width": 64, "sample_height": 64, "sample_steps": 2,
              "sample_prompts": ["tok, a red circle", "tok, a blue square"], "eval_every": 10, "holdout_images": 1}
    ids = [_post(f"{studio}/api/jobs", {"name": name, "dataset": "tiny-set",
                                        "config": {**config, **extra}})["job"]["id"]
           for name, extra in (("slow lr", {"name": "slow-lr", "learning_rate": 0.0001}),
                               ("fast lr", {"name": "fast-lr", "learning_rate": 0.002, "rank": 8}))]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        statuses = [json.loads(urllib.request.urlopen(f"{studio}/api/jobs/{i}").read())["job"]["status"] for i in ids]
        if all(s in ("completed", "failed") for s in statuses):
            break
        time.sleep(1)
    assert statuses == ["completed", "completed"]
    # a job made before a setting existed ran with its default: it does not show as a difference
    from studio.jobs import JobStore
    from studio.workspace import Workspace

    store = JobStore(Workspace(demo_root).db_path)
    older = {key: value for key, value in store.get(ids[0]).config.items() if key != "flip_horizontal"}
    store.update(ids[0], config=older)
    # the second prompt's LoRA-off picture as if "fast lr" rendered it at another size: each run's is shown
    samples = Workspace(demo_root).jobs / ids[1] / "samples"
    for listing, key in ((samples / "base" / "prompts.json", "key"), (samples / "step_000030" / "prompts.json",
                                                                       "base_key")):
        data = json.loads(listing.read_text())
        for entry in data["prompts"]:
            if entry["index"] == 1:
                entry[key] = "another-size"
        listing.write_text(json.dumps(data))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = watch_page(page)
        page.set_default_timeout(30_000)
        page.goto(studio + "/")
        expect(page.locator("#recent tbody tr")).to_have_count(2)
        expect(page.locator("#compare-btn")).to_be_hidden()
        page.locator(f"[data-pick='{ids[0]}']").check()
        expect(page.locator("#compare-btn")).to_be_disabled()
        page.locator(f"[data-pick='{ids[1]}']").check()
        expect(page.locator("#compare-btn")).to_have_text("Compare 2 runs")
        page.locator("#compare-btn").click()
        page.wait_for_url("**/compare?jobs=*")
        expect(page.locator("#compare-legend .legend-item")).to_have_text(["slow lr", "fast lr"])
        page.wait_for_function("document.querySelector('#compare-chart').dataset.series === '2'")
        assert int(page.locator("#compare-chart").get_attribute("data-points")) == 60  # 30 steps each
        # results first, then only the settings that differ
        table = page.locator("#compare-settings")
        expect(table.locator("tr.result").first).to_contain_text("completed")
        expect(table.locator("tr.result", has_text="Trained on")).to_contain_text("CPU")  # a pod: the GPU's name
        # each setting as the form names it
        expect(table.locator("tr", has_text="Learning rate")).to_contain_text("0.0001")
        expect(table.locator("tr", has_text="Learning rate")).to_contain_text("0.002")
        expect(table.locator("tr", has_text="LoRA rank")).to_contain_text("8")
        expect(table).not_to_contain_text("Sample every")
        expect(table).not_to_contain_text("Mirror images")
        expect(table).to_contain_text("other settings are the same in every run")
        expect(table.locator("tr.result", has_text="Evaluation loss")).to_contain_text("(step 30)")
        expect(table.locator("tr.result", has_text="Held-out loss, lowest")).to_contain_text("at step")
        expect(table.locator("tr.result", has_text="Held-out loss, lowest")).to_contain_text("★ generalises best")
        # how much each LoRA changes its previews without the trigger word (the fast one surely changed them)
        expect(table.locator("tr.result", has_text="Without the trigger word")).to_contain_text(
            "% of the LoRA's change (step 30)")
        # the evaluations as measured (before the first step, every 10 steps), then the held-out images'
        page.locator("#compare-modes [data-mode='eval']").click()
        expect(page.locator("#compare-chart-title")).to_have_text("Evaluation loss")
        page.wait_for_function("document.querySelector('#compare-chart').dataset.points === '8'")
        page.locator("#compare-modes [data-mode='holdout']").click()
        expect(page.locator("#compare-chart-title")).to_have_text("Held-out images' loss")
        page.wait_for_function("document.querySelector('#compare-chart').dataset.points === '8'")
        page.locator("#compare-chart").screenshot(path=str(artifacts_dir / "trainer-compare-holdout.png"))
        page.locator("#compare-modes [data-mode='loss']").click()
        page.wait_for_function("document.querySelector('#compare-chart').dataset.points === '60'")
        # each prompt: the base, then each run's latest preview
        expect(page.locator(".compare-prompt")).to_have_count(2)
        first = page.locator(".compare-prompt").first
        expect(first.locator("figcaption")).to_have_text(["Base (LoRA off)", "slow lr · step 30", "fast lr · step 30"])
        expect(page.locator(".compare-prompt").nth(1).locator("figcaption")).to_have_text([
            "Base (LoRA off) · as slow lr", "Base (LoRA off) · as fast lr", "slow lr · step 30", "fast lr · step 30"])
        page.wait_for_function("[...document.querySelectorAll('.compare-prompt img')].every(i => i.naturalWidth > 0)")
        first.locator("img").nth(2).click()
        expect(page.locator(".lightbox img")).to_have_attribute("src", re.compile(r"/samples/step_000030/0\.png$"))
        page.locator(".lightbox").click()
        # a prompt of your own: the same seed and strength with every run's LoRA, Base once, side by side
        page.fill("#ctry-prompt", "[trigger], a green triangle")
        page.fill("#ctry-seed", "77")
        page.locator("#ctry-go").click()
        row = page.locator(".ctry-row").first
        expect(row).to_contain_text("[trigger], a green triangle · seed 77 · strength 1")  # as typed
        expect(row.locator("figcaption")).to_have_text(["Base (LoRA off)", "slow lr · final LoRA (step 30)",
                                                        "fast lr · final LoRA (step 30)"])
        page.wait_for_function("[...document.querySelectorAll('.ctry-row img')].length === 3 && "
                               "[...document.querySelectorAll('.ctry-row img')].every(i => i.naturalWidth > 0)",
                               timeout=120_000)
        # each run's image is a render of that job (its own Try panel lists it), Base rendered once
        listing = page.request.get(f"{studio}/api/jobs/{ids[1]}/renders").json()["renders"]
        assert [(r["prompt"], r["strengths"], r["seed"]) for r in listing] == [("tok, a green triangle", [1], 77)]
        page.screenshot(path=str(artifacts_dir / "trainer-compare.png"), full_page=True)
        page.reload()  # remembered in this browser for these runs
        expect(page.locator(".ctry-row img")).to_have_count(3)
        page.locator(".ctry-row [data-ctry-delete]").click()  # the row goes, and its renders from each run
        expect(page.locator(".ctry-row")).to_have_count(0)
        assert page.request.get(f"{studio}/api/jobs/{ids[1]}/renders").json()["renders"] == []
        # on a phone: two pictures a row, and each caption whole (it says whose picture it is)
        page.set_viewport_size({"width": 390, "height": 844})
        first = page.locator(".compare-prompt").first
        expect(first.locator("figcaption").nth(2)).to_have_text("fast lr · step 30")
        assert page.evaluate("""() => {
            const row = document.querySelector('.compare-prompt .gallery-row');
            const captions = [...document.querySelectorAll('.compare-prompt figcaption')];
            return getComputedStyle(row).gridTemplateColumns.split(' ').length === 2
              && captions.every((c) => c.scrollWidth <= c.clientWidth + 1);
        }""")
        page.set_viewport_size({"width": 1400, "height": 1000})
        # a job no longer on the pod (a link kept from before it was deleted): the page says so, not a raw 404
        gone = page.request.get(f"{studio}/compare?jobs={ids[0]},nope")
        assert gone.status == 200 and "no longer on this pod" in gone.text() and "nope" in gone.text()
        # a job with held-out images: their line in the legend, and the checkpoint nearest their lowest loss marked
        page.goto(f"{studio}/jobs/{ids[1]}")
        expect(page.locator("#legend-held")).to_be_visible()
        expect(page.locator("#checkpoints .chip.best-held")).to_have_count(1)
        expect(page.locator("#s-eval-sub")).to_contain_text("held-out")
        browser.close()
    assert problems == []
