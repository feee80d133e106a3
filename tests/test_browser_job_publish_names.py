"""The job page's Publish dialog offers the LoRA's name as the repo: "cat--v2-" is a fine LoRA name the hub refuses
as a repo name, so the dialog opened on a name that failed when sent. It offers the name the hub takes."""

from __future__ import annotations

import trainer
from studio.settings import load_settings
from tests.browser_studio import browser_marks, open_page
from tests.helpers import ServerProcess
from tests.test_browser_trainer_publish import publish_env
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_trainer_renders import finished_job

pytestmark = browser_marks


def test_the_dialog_offers_a_repo_name_the_hub_takes(demo_root, demo_paths, tmp_path, hub):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    app = trainer.create_app(load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1"}))
    store = app.extensions["job_store"]
    job = finished_job(store, demo_root, demo_paths)
    store.update(job.id, config={**job.config, "name": "cat--v2-"})
    with ServerProcess("trainer", publish_env(demo_root, hub), port_var="TRAINER_PORT",
                       log_path=tmp_path / "web.log") as web, sync_playwright() as p:
        browser, page, problems = open_page(p)
        page.goto(f"{web.url}/jobs/{job.id}")
        page.click("#btn-publish")
        expect(page.locator("#publish-repo")).to_have_value("cat-v2")
        page.click("#publish-start")
        expect(page.locator("#publish-link")).to_have_text("me/cat-v2")
        assert problems == []
        browser.close()
