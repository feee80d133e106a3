"""In a real browser against the real server (gunicorn), with STUDIO_PASSWORD set: "Download ZIP" of a dataset named in
Japanese saves a file named as the dataset is, holding the images and captions under their own names; without the
password the download is refused; and deleting the export version a queued training job uses is refused in the
Export dialog with the sentence that says why."""

from __future__ import annotations

import zipfile

import requests

from tests.browser_studio import BEARER, PASSWORD, browser_marks, login, open_page
from tests.helpers import ServerProcess, free_port
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks


def test_download_named_as_the_dataset_and_a_used_version_kept(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "STUDIO_PASSWORD": PASSWORD,
           "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "PORT": str(free_port()), "TRAINER_PORT": str(free_port())}
    datasets = ServerProcess("app", env, port_var="PORT", log_path=tmp_path / "datasets.log")
    trainer = ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "trainer.log")
    with datasets, trainer, sync_playwright() as p:
        url = datasets.url
        made = requests.post(f"{url}/api/datasets", json={"name": "日本の猫", "trigger_word": "neko"}, headers=BEARER,
                             timeout=10).json()
        files = [("files", ("猫 1.png", image_bytes(1), "image/png")),
                 ("files", ("猫 1.txt", "ねこ".encode(), "text/plain"))]
        assert requests.post(f"{url}/api/datasets/{made['id']}/upload?wait=20", files=files, headers=BEARER,
                             timeout=60).json()["status"] == "completed"
        assert requests.get(f"{url}/api/datasets/{made['id']}/download", timeout=10).status_code == 401

        browser, page, problems = open_page(p)
        login(page, url)
        page.goto(f"{url}/d/{made['id']}")
        with page.expect_download() as started:
            page.click("#btn-download")
        download = started.value
        assert download.suggested_filename == "日本の猫.zip"
        saved = tmp_path / "saved.zip"
        download.save_as(saved)
        assert zipfile.ZipFile(saved).namelist() == ["猫 1.png", "猫 1.txt", "dataset.json"]

        page.click("#btn-export")
        page.fill("#export-name", "neko")
        page.click("#export-start")
        expect(page.locator("#export-result")).to_contain_text("Exported 1 image")
        first = requests.get(f"{url}/api/exports", headers=BEARER, timeout=10).json()["versions"][0]["version"]
        job = requests.post(f"{trainer.url}/api/jobs", json={"name": "neko try", "dataset": "neko",
                                                             "config": {"name": "neko-try", "steps": 10}},
                            headers=BEARER, timeout=30).json()["job"]
        assert job["dataset_version"] == first
        requests.put(f"{url}/api/datasets/{made['id']}/captions/猫 1.png", json={"caption": "a black cat"},
                     headers=BEARER, timeout=10)
        page.click("#export-start")
        expect(page.locator("#export-result")).to_contain_text("Exported 1 image")
        page.locator("#export-versions summary").click()
        row = page.locator("#export-versions-list li", has_text=first[:8])
        expect(row).to_contain_text("needed by neko try")
        expect(row.locator("button")).to_have_count(0)  # not offered for deleting
        refused = requests.delete(f"{url}/api/exports/{first}", headers=BEARER, timeout=10)
        assert refused.status_code == 409 and job["id"] in refused.json()["error"]
        assert problems == []
        browser.close()
