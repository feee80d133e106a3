"""Browser test of the express lane: the real dataset manager, caption service (tiny GGUF), trainer and
worker as subprocesses in demo mode, driven through chromium from a ZIP to a downloaded LoRA.

It reloads the page in the middle (the run is state on the server), checks every stage ends completed,
that the base and LoRA previews exist and differ, downloads the LoRA and reads its keys, and checks
the page fits a phone's width. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.browser_studio import ARGS, CHROMIUM, NOTIFICATIONS, assert_no_sideways_scroll, browser_marks, watch_page
from tests.helpers import REPO, ServerProcess, free_port
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


@pytest.fixture
def studio(demo_root, tmp_path):
    ports = {"PORT": free_port(), "QWEN_PORT": free_port(), "TRAINER_PORT": free_port()}
    env = {"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "PYTHONPATH": str(REPO),
           "CAPTION_URL": f"http://127.0.0.1:{ports['QWEN_PORT']}", "GPU_PRICE_PER_HOUR": "2.5",
           **{k: str(v) for k, v in ports.items()}}
    servers = [ServerProcess("caption_service", env, port_var="QWEN_PORT", log_path=tmp_path / "caption.log"),
               ServerProcess("app", env, port_var="PORT", log_path=tmp_path / "datasets.log"),
               ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "trainer.log")]
    worker = None
    try:
        for server in servers:
            server.start()
        worker = subprocess.Popen([sys.executable, "-m", "trainer.worker"], cwd=REPO, env={**os.environ, **env},
                                  stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT)
        yield {"datasets": servers[1].url, "trainer": servers[2].url, "logs": tmp_path, "root": demo_root}
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        for server in servers:
            server.stop()


def _zip(path, count: int = 6) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"my cat/cat {i}.png", image_bytes(i, size=(96, 80)))
    path.write_bytes(buffer.getvalue())


def test_zip_to_downloaded_lora_with_base_and_lora_previews(studio, artifacts_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    archive = tmp_path / "cats.zip"
    _zip(archive)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page.add_init_script(NOTIFICATIONS)
        problems = watch_page(page)
        page.set_default_timeout(30_000)
        page.goto(studio["datasets"] + "/express")
        assert_no_sideways_scroll(page)
        # a common word is refused before anything starts
        page.set_input_files("#x-files", str(archive))
        expect(page.locator("#x-chosen")).to_contain_text("1 file")
        page.fill("#x-trigger", "cat")
        page.click("#x-go")
        expect(page.locator("#x-error")).to_contain_text("common word")
        page.fill("#x-trigger", "zxcat")
        # "keep the others as the base model draws them" (preserve_class) for a person or an object only
        page.check("input[name=kind][value=person]")
        expect(page.locator("#x-keep-row")).to_contain_text("Keep other people as the base model draws them")
        page.check("input[name=kind][value=style]")
        expect(page.locator("#x-keep-row")).to_be_hidden()
        page.check("input[name=kind][value=object]")
        expect(page.locator("#x-keep-row")).to_contain_text("Keep other objects as the base model draws them")
        expect(page.locator("#x-keep-row")).to_contain_text("2.4× the training time")
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/express")) as sent:
            page.click("#x-go")
        assert sent.value.post_data_json == {"trigger_word": "zxcat", "kind": "object", "preserve": False}
        page.wait_for_url("**/express/express-*")
        expect(page.locator("#x-notify")).to_be_visible()  # offered for the run the form has just made
        expect(page).to_have_title(re.compile(r"zxcat.* · Express$"))
        expect(page.locator(".x-stage[data-stage=caption]")).not_to_have_class("x-stage waiting", timeout=60_000)
        page.reload()  # the run is state on the server: a reload shows the same run
        expect(page.locator("#x-title")).to_contain_text("zxcat")
        page.locator("#x-notify").click()  # a desktop notification when it is done
        expect(page.locator("#x-notify")).to_have_text("Notifying ✓")
        expect(page.locator("#x-done")).to_be_visible(timeout=300_000)
        expect(page).to_have_title(re.compile(r"^✓ .*zxcat.* · Express$"))
        assert [note["title"] for note in page.evaluate("window.__notes")] == [
            page.title().removesuffix(" · Express") + ": your LoRA is ready"]
        expect(page.locator("#x-notify")).to_be_hidden()
        for stage in ("upload", "import", "caption", "export", "train"):
            expect(page.locator(f".x-stage[data-stage={stage}]")).to_have_class("x-stage completed")
        expect(page.locator("#x-plan-table")).to_contain_text("trigger_word")
        # a LoRA that changes its previews as much without the trigger word (here the tiny model's, which barely
        # changed them, is made to look so): the page says so and offers the run again keeping the class
        run = page.request.get(page.url.replace("/express/", "/api/express/")).json()
        assert "leak" in run["proof"] and run["proof"]["keep_class"] == "object"
        job_dir = Path(studio["root"]) / "trainer" / "jobs" / run["stages"][-1]["job_id"]
        last = sorted((job_dir / "samples").glob("step_*"))[-1] / "prompts.json"
        shown = json.loads(last.read_text())
        for entry in shown["prompts"]:
            entry["leak"] = 0.9 if entry.get("lora_no_trigger") else None
        last.write_text(json.dumps(shown))
        page.reload()
        expect(page.locator("#x-leak")).to_contain_text("still makes 90% of its change")
        with page.context.expect_page() as opened:
            page.click("#x-keep-again")
        form = opened.value
        form.wait_for_load_state()
        expect(form.locator("#f-preserve_class")).to_have_value("object")
        assert "preserve_class=object" in form.url
        form.close()
        # photos in, LoRA out: how long it took and what that cost at the pod's price
        expect(page.locator("#x-took")).to_have_text(re.compile(r"^From your files to this LoRA: .+, (under \$0\.01|"
                                                                r"about \$\d+\.\d\d at \$2\.50/h)\.$"))
        expect(page.locator("#x-edit")).to_have_attribute("href", re.compile(r"/new\?from=\d"))
        page.screenshot(path=str(artifacts_dir / "express-done.png"), full_page=True)

        # watch it learn: a link per prompt to its pictures in turn, an animated WebP from this origin
        watch = page.locator(".x-timelapse a").first
        expect(watch).to_have_text("prompt 1")
        animation = page.request.get(watch.evaluate("a => a.href"))
        assert animation.ok and animation.headers["content-type"] == "image/webp"
        # base and LoRA previews exist and differ
        pairs = page.locator("#x-sample-steps .x-pairs").first
        # each shows its small preview and links to the full picture
        base, base_thumb = pairs.locator("img[alt='base model']").evaluate("img => [img.closest('a').href, img.src]")
        lora, lora_thumb = pairs.locator("img[alt='with the LoRA']").evaluate("img => [img.closest('a').href, img.src]")
        origin = page.evaluate("location.origin")
        assert base.startswith(origin) and lora.startswith(origin)  # one origin: one login covers them
        base_bytes, lora_bytes = page.request.get(base).body(), page.request.get(lora).body()
        assert base_bytes[:4] == b"\x89PNG" and lora_bytes[:4] == b"\x89PNG" and base_bytes != lora_bytes
        assert base_thumb == base + "?thumb=1" and lora_thumb == lora + "?thumb=1"
        assert page.request.get(lora_thumb).body()[8:12] == b"WEBP"
        expect(page.locator("#x-grid")).to_be_visible()
        expect(page.locator("#x-workflow")).to_have_attribute("download", "zxcat-comfyui-workflow.json")
        # "Try it" opens the training job's page at its Try the LoRA panel (in the trainer)
        expect(page.locator("#x-try")).to_have_attribute("href", re.compile(r":\d+/jobs/[^/#]+#try-panel$"))
        expect(page.locator("#x-further")).to_have_attribute("href", re.compile(r":\d+/new\?from=[^&]+&start=[\w.-]+$"))

        # the LoRA downloads and has ComfyUI's key names
        with page.expect_download() as info:
            page.click("#x-download")
        saved = tmp_path / info.value.suggested_filename
        info.value.save_as(saved)
        assert saved.name == "zxcat.safetensors"
        header = json.loads(saved.read_bytes()[8:8 + int.from_bytes(saved.read_bytes()[:8], "little")])
        assert any(key.startswith("diffusion_model.layers.") for key in header)
        readme = page.request.get(page.locator("#x-done a", has_text="README").evaluate("a => a.href")).text()
        assert "zxcat" in readme

        # the same page on a phone
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(page.url)
        expect(phone.locator("#x-done")).to_be_visible()
        assert_no_sideways_scroll(phone)
        phone.screenshot(path=str(artifacts_dir / "express-phone.png"), full_page=True)
        phone.goto(studio["datasets"] + "/express")
        assert_no_sideways_scroll(phone)
        assert problems == []
        browser.close()


def test_files_chosen_again_after_a_failed_import_go_on_in_the_same_run(studio, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    notes = tmp_path / "notes.zip"
    with zipfile.ZipFile(notes, "w") as archive:
        archive.writestr("notes.txt", "no pictures here")
    good = tmp_path / "cats.zip"
    _zip(good, count=3)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        problems = watch_page(page)
        page.set_default_timeout(30_000)
        page.goto(studio["datasets"] + "/express")
        page.set_input_files("#x-files", str(notes))
        page.fill("#x-trigger", "zxnote")
        page.click("#x-go")
        expect(page.locator("#x-go")).to_have_text("Upload and go on", timeout=60_000)
        expect(page.locator("#x-message")).to_contain_text("Choose other files or another link to go on")
        first = page.url
        created = []
        page.on("request", lambda r: created.append(r.url) if r.method == "POST" and r.url.endswith("/api/express")
                else None)
        page.set_input_files("#x-files", str(good))
        page.click("#x-go")
        expect(page.locator(".x-stage[data-stage=import]")).to_have_class("x-stage completed", timeout=60_000)
        assert page.url == first and created == []  # the same run goes on: no second run, no second dataset
        runs = page.request.get(studio["datasets"] + "/api/express").json()
        assert len(runs["runs"]) == 1, runs
        assert problems == []
        browser.close()


def test_leaving_while_the_files_go_up_asks_first(studio, tmp_path):
    from playwright.sync_api import sync_playwright

    good = tmp_path / "slow.zip"
    _zip(good, count=2)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.route("**/uploads/*/chunks/*", lambda route: route.abort())  # the connection keeps dropping
        page.goto(studio["datasets"] + "/express")
        asks = """() => { const ev = new Event('beforeunload', { cancelable: true }); window.dispatchEvent(ev);
                          return ev.defaultPrevented; }"""
        assert page.evaluate(asks) is False  # nothing on its way yet
        page.set_input_files("#x-files", str(good))
        page.fill("#x-trigger", "zxslow")
        with page.expect_request(lambda request: "/chunks/" in request.url, timeout=30_000):
            page.click("#x-go")
        assert page.evaluate(asks) is True
        browser.close()
