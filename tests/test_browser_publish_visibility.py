"""Publishing a LoRA again from the job page in a real browser, to a repo that is public already, with Private
ticked: the repo is made private before the upload and the page says so, instead of calling a public repo private.
A local server stands in for the hub."""

from __future__ import annotations

import trainer
from studio.settings import load_settings
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_browser_trainer_publish import publish_env
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_trainer_renders import finished_job

pytestmark = browser_marks


def test_a_public_repo_published_to_as_private_is_made_private_and_said(demo_root, demo_paths, tmp_path,
                                                                        hub):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    job = finished_job(app.extensions["job_store"], demo_root, demo_paths)
    hub.add("me/tiny-lora", {"README.md": b"# an earlier version, public\n"})
    env = publish_env(demo_root, hub)
    with ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "web.log") as web, \
            sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{web.url}/jobs/{job.id}")
        page.click("#btn-publish")
        expect(page.locator("#publish-private")).to_be_checked()
        page.fill("#publish-repo", "tiny-lora")
        page.click("#publish-start")
        expect(page.locator("#publish-link")).to_have_text("me/tiny-lora")
        status = page.locator("#publish-status")
        expect(status).to_contain_text("(private)")
        expect(status).to_contain_text("me/tiny-lora was public: it was made private before the upload.")
        assert "me/tiny-lora" in hub.private
        page.reload()  # the note stays with the last publication
        expect(status).to_contain_text("was made private before the upload")
        assert problems == []
        browser.close()
