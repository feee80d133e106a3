"""Publish a dataset to Hugging Face from the export dialog in a real browser against a real dataset server: the
section after an export, a refused name, the progress, the link to the repo, and the state after a reload. A local
server stands in for the hub."""

from __future__ import annotations

import io
import time

import requests

from tests.browser_studio import browser_marks, check_publish_form, open_page
from tests.helpers import ServerProcess
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


def _exported(url: str) -> str:
    dataset_id = requests.post(f"{url}/api/datasets", json={"name": "Cats", "trigger_word": "tok"},
                               timeout=10).json()["id"]
    files = [("files", (name, io.BytesIO(data))) for name, data in
             [("a.png", image_bytes(1, size=(96, 96))), ("b.png", image_bytes(2, size=(96, 96))),
              ("a.txt", b"a cat on a chair")]]
    assert requests.post(f"{url}/api/datasets/{dataset_id}/upload?wait=20", files=files, timeout=30).ok
    requests.post(f"{url}/api/datasets/{dataset_id}/export", json={"name": "cats-v1"}, timeout=10).raise_for_status()
    deadline = time.monotonic() + 30
    while requests.get(f"{url}/api/datasets/{dataset_id}/export", timeout=10).json()["job"]["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return dataset_id


def _open_section(page, url: str, dataset_id: str) -> None:
    """The dataset's gallery, its Export dialog, and the Publish to Hugging Face section in it."""
    page.goto(f"{url}/d/{dataset_id}")
    page.click("#btn-export")
    page.click("#hub-push summary")


def test_publish_a_dataset_from_the_export_dialog(studio_root, artifacts_dir, tmp_path, hub):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "HF_ENDPOINT": hub.url,
           "HF_TOKEN": "hf_write", "HF_HUB_OFFLINE": "0"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = _exported(server.url)
        browser, page, problems = open_page(p)
        _open_section(page, server.url, dataset_id)
        check_publish_form(page, "hub", "cats-v1", "not/a/name")
        page.fill("#hub-repo", "cats")
        page.screenshot(path=str(artifacts_dir / "datasets" / "10-publish-dataset.png"))
        page.click("#hub-start")
        expect(page.locator("#hub-link")).to_have_text("me/cats")
        expect(page.locator("#hub-result")).to_contain_text("Published 2 images to me/cats")
        expect(page.locator("#hub-result")).to_contain_text("private, export cats-v1")
        assert page.locator("#hub-link").get_attribute("href") == f"{hub.url}/datasets/me/cats"
        assert sorted(hub.repos["datasets/me/cats"]) == ["README.md", "train/a.png", "train/a.txt", "train/b.png",
                                                         "train/b.txt", "train/metadata.jsonl"]
        _open_section(page, server.url, dataset_id)  # the dialog shows the last publication when opened again
        expect(page.locator("#hub-link")).to_have_text("me/cats")
        expect(page.locator("#hub-push-summary")).to_have_text("(last: me/cats)")
        assert problems == []
        browser.close()


def test_without_a_token_the_section_says_why(studio_root, tmp_path, hub):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "HF_ENDPOINT": hub.url}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = _exported(server.url)
        browser, page, problems = open_page(p)
        _open_section(page, server.url, dataset_id)
        expect(page.locator("#hub-start")).to_be_disabled()
        expect(page.locator("#hub-error")).to_contain_text("The pod has no HF_TOKEN")
        assert problems == []
        browser.close()


def test_export_opened_before_the_datasets_figures_arrive_fills_in_when_they_do(studio_root, tmp_path, hub):  # noqa: F811
    """A click on Export right after the page loaded (on a busy pod the dataset's figures come late) still shows
    the last export and the publish section once they arrive."""
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "HF_ENDPOINT": hub.url,
           "HF_TOKEN": "hf_write", "HF_HUB_OFFLINE": "0"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server, sync_playwright() as p:
        dataset_id = _exported(server.url)
        browser, page, problems = open_page(p)
        held = []

        def late(route):  # the dataset's first figures come two seconds late
            if not held:
                held.append(route.request.url)
                time.sleep(2)
            route.continue_()

        page.route(f"**/api/datasets/{dataset_id}", late)
        page.goto(f"{server.url}/d/{dataset_id}", wait_until="domcontentloaded")
        page.click("#btn-export")
        expect(page.locator("#export-dialog")).to_be_visible()
        expect(page.locator("#hub-push")).to_be_visible(timeout=15_000)
        expect(page.locator("#export-result")).to_contain_text("Last export: 2 images")
        expect(page.locator("#export-name")).to_have_value("cats-v1")
        assert held and problems == []
        browser.close()
