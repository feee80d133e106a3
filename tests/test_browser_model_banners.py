"""A page opened in the first minutes of a pod, while the models download: its banner follows the download
(percent, then a retry) and goes away once the models are ready, without a reload. The route it asks is behind
the password like every other."""

from __future__ import annotations

import os
import time

import requests

from studio.atomic import atomic_write_json
from studio.workspace import Workspace
from tests.browser_studio import BEARER, PASSWORD, browser_marks, login, open_page
from tests.helpers import ServerProcess

pytestmark = browser_marks


def _status(root, *models, state="downloading"):
    atomic_write_json(Workspace(root).model_status_file, {
        "state": state, "demo": False, "pid": os.getpid(), "updated_at": time.time(), "models": list(models)})


def _model(key, name, state, percent=0.0, **extra):
    return {"key": key, "name": name, "state": state, "percent": percent, "bytes_done": 0, "bytes_total": 100,
            "speed_bps": None, "eta_s": None, "error": None, **extra}


def test_the_download_banner_follows_the_download_and_leaves_when_the_models_are_ready(studio_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _status(studio_root, _model("caption", "Qwen2.5-VL-7B-Instruct-GGUF", "downloading", 12.0),
            _model("zimage", "Z-Image-Turbo", "pending"))
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "STUDIO_PASSWORD": PASSWORD,
           "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "app.log") as server, sync_playwright() as p:
        # the route the page asks answers nobody without the password
        assert requests.post(server.url + "/_studio/model-banners", timeout=10).status_code in (401, 405)
        assert requests.get(server.url + "/_studio/model-banners", timeout=10,
                            headers={"Accept": "application/json"}).status_code == 401
        answer = requests.get(server.url + "/_studio/model-banners", headers=BEARER, timeout=10)
        assert answer.status_code == 200 and answer.json()["banners"][0]["id"] == "models"

        browser, page, problems = open_page(p)
        login(page, server.url)
        banner = page.locator("#models")
        expect(banner).to_contain_text("Downloading models: Qwen2.5-VL-7B-Instruct-GGUF 12%, Z-Image-Turbo waiting")

        _status(studio_root, _model("caption", "Qwen2.5-VL-7B-Instruct-GGUF", "ready", 100.0),
                _model("zimage", "Z-Image-Turbo", "downloading", 63.0, speed_bps=1.2e9, eta_s=180))
        expect(banner).to_have_text("Downloading models: Z-Image-Turbo 63% (1.2 GB/s, ETA 3 min)", timeout=15_000)

        _status(studio_root, _model("caption", "Qwen2.5-VL-7B-Instruct-GGUF", "ready", 100.0),
                _model("zimage", "Z-Image-Turbo", "error", 70.0, retrying=True,
                       error="The hub could not be reached for org/Image-Turbo (ConnectError)."), state="error")
        expect(page.locator("#models-retry")).to_contain_text("It retries by itself", timeout=15_000)
        expect(banner).to_have_count(0)

        _status(studio_root, _model("caption", "Qwen2.5-VL-7B-Instruct-GGUF", "ready", 100.0),
                _model("zimage", "Z-Image-Turbo", "ready", 100.0), state="ready")
        expect(page.locator("#models, #models-retry, #models-error")).to_have_count(0, timeout=15_000)
        expect(page.locator("#banners")).not_to_contain_text("Downloading models")
        assert problems == []
        browser.close()


def test_a_page_opened_after_the_download_asks_nothing(studio_root, tmp_path):
    from playwright.sync_api import sync_playwright

    _status(studio_root, _model("zimage", "Z-Image-Turbo", "ready", 100.0), state="ready")
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"}
    with ServerProcess("app", env, log_path=tmp_path / "app.log") as server, sync_playwright() as p:
        browser, page, problems = open_page(p)
        asked = []
        page.on("request", lambda r: asked.append(r.url) if "model-banners" in r.url else None)
        page.goto(server.url + "/")
        page.wait_for_timeout(5_000)  # longer than one polling period
        assert asked == [] and problems == []
        browser.close()
