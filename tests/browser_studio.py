"""A studio for browser tests: the dataset manager and the trainer as real servers (demo mode, a
password set, no worker), on a workspace seeded through the public API, plus chromium helpers.

Seeded: "My cat" (trigger mycat; six photos, an exact copy of one, one 320x240 image) exported as
my-cat, "Dog set" (trigger dogz) exported as dog-set, and a queued job on my-cat whose LoRA is named
my-cat and whose log holds tqdm progress bars.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from studio.upgrade import open_job_store
from studio.workspace import Workspace
from tests.helpers import REPO, ServerProcess, free_port
from tests.test_datasets_support import image_bytes

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "paint the cat"
BEARER = {"Authorization": f"Bearer {PASSWORD}"}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = [pytest.param(DESKTOP, id="1280x800"), pytest.param(PHONE, id="390x844")]
# What a worker writes while loading and saving: tqdm bars redrawn with carriage returns, and one that
# prints each update on a line of its own.
NOISY_LOG = ("[2026-12-01 10:00:00] worker 4242: starting attempt 1\n"
             "Loading pipeline components...:   0%|          | 0/3 [00:00<?, ?it/s]\r"
             "Loading pipeline components...:  67%|██████▋   | 2/3 [00:00<00:00, 9.10it/s]\r"
             "Loading pipeline components...: 100%|██████████| 3/3 [00:00<00:00, 9.80it/s]\n"
             "dataset my-cat: 7 images\n"
             "Caching latents:  50%|█████     | 1/2 [00:01<00:01, 1.00it/s]\n"
             "Caching latents: 100%|██████████| 2/2 [00:02<00:00, 1.00it/s]\n"
             "Writing model shards: 100%|█████| 3/3 [00:01<00:00, 2.10it/s]\r\n"
             "step 1/10 loss 0.4210\n")
# What the engine reports when it changes something on its own (trainer/engine/training_run.py).
NOTICES = ["Out of memory at step 3; every block now recomputes its activations (gradient checkpointing on) and "
           "the step runs again.",
           "Previews at step 250 skipped: out of memory while rendering 1024x1024; training goes on (lower "
           "sample_width and sample_height for previews)."]

browser_marks = [pytest.mark.browser, pytest.mark.slow,
                 pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")]


@dataclass
class Studio:
    root: Path
    datasets: str
    trainer: str
    dataset_id: str
    job_id: str
    logs: Path
    extra: dict = field(default_factory=dict)

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.root)

    def store(self):
        return open_job_store(self.workspace)

    def api(self, base: str, path: str, body: dict | None = None, method: str | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"),
                                         headers={**BEARER, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _wait_export(studio_api, dataset_id: str) -> None:
    import time

    for _ in range(200):
        job = studio_api(f"/api/datasets/{dataset_id}/export")["job"]
        if job and job["status"] not in ("queued", "running"):
            assert job["status"] == "completed", job
            return
        time.sleep(0.1)
    raise TimeoutError("the export did not finish")


def _seed_dataset(url: str, name: str, trigger: str, files: list[tuple[str, bytes]], export: str) -> str:
    def api(path, body=None):
        response = requests.request("POST" if body is not None else "GET", url + path, json=body, headers=BEARER,
                                    timeout=30)
        response.raise_for_status()
        return response.json()

    dataset_id = api("/api/datasets", {"name": name, "trigger_word": trigger})["id"]
    upload = requests.post(f"{url}/api/datasets/{dataset_id}/upload?wait=20", headers=BEARER, timeout=60,
                           files=[("files", (n, data, "image/png")) for n, data in files])
    upload.raise_for_status()
    api(f"/api/datasets/{dataset_id}/export", {"name": export})
    _wait_export(api, dataset_id)
    return dataset_id


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    logs = tmp_path_factory.mktemp("logs")
    ports = {"PORT": free_port(), "TRAINER_PORT": free_port()}
    env = {"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "PYTHONPATH": str(REPO),
           "STUDIO_PASSWORD": PASSWORD, "CAPTION_URL": "http://127.0.0.1:9", **{k: str(v) for k, v in ports.items()}}
    servers = [ServerProcess("app", env, port_var="PORT", log_path=logs / "datasets.log"),
               ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=logs / "trainer.log")]
    try:
        for server in servers:
            server.start()
        datasets, trainer = servers[0].url, servers[1].url
        cats = [(f"cat{i}.png", image_bytes(i, size=(640, 640))) for i in range(6)]
        cats += [("dup.png", image_bytes(0, size=(640, 640))), ("tiny.png", image_bytes(77, size=(320, 240)))]
        dataset_id = _seed_dataset(datasets, "My cat", "mycat", cats, "my-cat")
        _seed_dataset(datasets, "Dog set", "dogz", [(f"dog{i}.png", image_bytes(20 + i, size=(600, 600)))
                                                    for i in range(3)], "dog-set")
        studio = Studio(root, datasets, trainer, dataset_id, "", logs)
        job = studio.api(trainer, "/api/jobs", {"name": "first try", "dataset": "my-cat",
                                                "config": {"name": "my-cat", "steps": 10}})["job"]
        studio.job_id = job["id"]
        (studio.workspace.jobs / job["id"]).mkdir(parents=True, exist_ok=True)
        (studio.workspace.jobs / job["id"] / "log.txt").write_text(NOISY_LOG, "utf-8")
        studio.store().progress(job["id"], {"notices": NOTICES})  # what a run changed on its own
        yield studio
    finally:
        for server in servers:
            server.stop()


def login(page, url: str) -> None:
    """Log in through the login page (one cookie serves both services: same host, shared secret)."""
    page.goto(url + "/login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


WIDE_ELEMENTS = """() => Array.from(document.querySelectorAll('body *'))
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 6).map((e) => `${e.tagName}.${e.className}#${e.id} ${Math.round(e.getBoundingClientRect().right)}px`)"""


def assert_no_sideways_scroll(page) -> None:
    scroll, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{page.url} is {scroll} px wide in a {inner} px window: {page.evaluate(WIDE_ELEMENTS)}"


def open_page(playwright, viewport: dict = DESKTOP):
    """(browser, page, problems): chromium with a page of `viewport` watched by `watch_page`, 20 s per wait."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport=viewport)
    problems = watch_page(page)
    page.set_default_timeout(20_000)
    return browser, page, problems


def check_publish_form(page, prefix: str, default_repo: str, bad_repo: str) -> None:
    """A publish form (ids `<prefix>-repo`, `-private`, `-start`, `-error`) offers `default_repo`, private, and
    answers a malformed repo name in the form itself."""
    from playwright.sync_api import expect

    expect(page.locator(f"#{prefix}-repo")).to_have_value(default_repo)
    expect(page.locator(f"#{prefix}-private")).to_be_checked()
    page.fill(f"#{prefix}-repo", bad_repo)
    page.click(f"#{prefix}-start")
    expect(page.locator(f"#{prefix}-error")).to_contain_text("not a valid repo name")


def watch_page(page) -> list[str]:
    """Script errors on the page and API calls it makes that answer 404 or 5xx: each is a bug, the list stays empty."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))

    def answered(response):
        if "/api/" in response.url and (response.status == 404 or response.status >= 500):
            problems.append(f"{response.status} {response.request.method} {response.url}")

    page.on("response", answered)
    return problems


# Headless chromium shows no desktop notifications: a stand-in records what the page asks for.
NOTIFICATIONS = """
window.__notes = [];
window.Notification = class { constructor(title, options) { window.__notes.push({ title, tag: options.tag }); }
  close() {} static get permission() { return 'granted'; }
  static requestPermission() { return Promise.resolve('granted'); } };
"""
