"""Publish to Hugging Face from the job page in a real browser against a real trainer server: the button on a
finished job, the dialog, the progress line and the link to the repo. A local server stands in for the hub."""

from __future__ import annotations

import re

import trainer
from studio.settings import load_settings
from tests.browser_studio import browser_marks, check_publish_form, open_page
from tests.helpers import REPO, ServerProcess, free_port
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_trainer_renders import finished_job

pytestmark = browser_marks


def publish_env(demo_root, stand_in) -> dict:
    """A demo trainer on a free port that publishes to the stand-in hub with a token that may write."""
    return {"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "TRAINER_PORT": str(free_port()),
            "CAPTION_URL": "http://127.0.0.1:9", "PYTHONPATH": str(REPO), "HF_ENDPOINT": stand_in.url,
            "HF_TOKEN": "hf_write", "HF_HUB_OFFLINE": "0"}


def test_publish_a_finished_lora_from_the_job_page(demo_root, demo_paths, artifacts_dir, tmp_path, hub):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    job = finished_job(app.extensions["job_store"], demo_root, demo_paths)
    env = publish_env(demo_root, hub)
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as web, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{web.url}/jobs/{job.id}")
        page.click("#btn-publish")
        check_publish_form(page, "publish", "tiny-lora", "bad/name/here")
        page.fill("#publish-repo", "tiny-lora")
        page.screenshot(path=str(artifacts_dir / "trainer-publish-dialog.png"))
        page.click("#publish-start")
        expect(page.locator("#publish-link")).to_have_text("me/tiny-lora")
        expect(page.locator("#publish-status")).to_contain_text("(private)")
        assert page.locator("#publish-link").get_attribute("href") == f"{hub.url}/me/tiny-lora"
        assert "tiny-lora.safetensors" in hub.repos["me/tiny-lora"]
        page.reload()  # the page shows the last publication when opened again
        expect(page.locator("#publish-link")).to_have_text("me/tiny-lora")
        page.screenshot(path=str(artifacts_dir / "trainer-published.png"), full_page=True)
        assert problems == []
        browser.close()


def test_a_publication_on_its_way_can_be_stopped_from_the_job_page(demo_root, demo_paths, tmp_path, hub,  # noqa: F811
                                                                   monkeypatch):
    import time

    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    job = finished_job(app.extensions["job_store"], demo_root, demo_paths)
    receive = hub.receive

    def slow_uploads(handler):  # each file takes a while to go up, as a big LoRA does
        if "/preupload/" in handler.path:
            time.sleep(4)
        return receive(handler)

    monkeypatch.setattr(hub, "receive", slow_uploads)
    with ServerProcess("trainer", publish_env(demo_root, hub), port_var="TRAINER_PORT",
                       log_path=tmp_path / "web.log") as web, sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{web.url}/jobs/{job.id}")
        page.click("#btn-publish")
        page.fill("#publish-repo", "stopped-lora")
        page.click("#publish-start")
        expect(page.locator("#publish-status")).to_contain_text(re.compile(r"\(file \d+ of "))
        page.click("#publish-stop")
        expect(page.locator("#publish-status")).to_contain_text("was stopped: Stopped before anything was committed",
                                                                timeout=30_000)
        assert hub.commits == []
        assert problems == []
        browser.close()
