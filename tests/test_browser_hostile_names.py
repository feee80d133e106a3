"""Hostile names and texts on every page, in a real browser: shown as text, never run.

Through the public API (and files as a person or another tool leaves them) the studio is given: a dataset whose
name, trigger word and captions hold markup and quotes; images named with quotes and brackets (uploaded, and in a
ZIP whose entry is named like a tag); a training job whose name, trigger word and preview prompts hold markup;
LoRA files of the library whose .safetensors metadata (modelspec.title, trigger phrases, ss_* keys) hold markup and
whose source and Civitai links are javascript: URLs; and a caption service whose health status is markup
(CAPTION_URL may point to another machine). Every page is opened and used a little: no script of the planted
values runs (window.__pwned stays unset, no dialog opens), no element gets an event handler or a javascript: link,
and the names show as they were given.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
import requests

from studio.workspace import Workspace
from tests.browser_studio import ARGS, CHROMIUM, browser_marks
from tests.helpers import ServerProcess, free_port
from tests.test_datasets_support import image_bytes

pytestmark = browser_marks

# markup, both quotes and a template literal: whichever way a page builds its HTML, one of them would run
HOSTILE = "\"'><img src=x onerror=window.__pwned=1>`${window.__pwned=2}`"
DATASET = "Mia's set " + HOSTILE
TRIGGER = "m1a'<b>x</b>"
CAPTION = "a photo of Mia " + HOSTILE
COVER = "0 Mia's photo (1).png"  # the first image: the dataset's cover on its card
QUOTED = "q'onerror='x.png"
ZIPPED = "<img src=x onerror=window.__pwned=3>.png"  # as a ZIP names it; the import keeps it as a plain name
JOB = "Job " + HOSTILE
PROMPT = "[trigger] Tom & Jerry's " + HOSTILE
LORA_FILE = "Mia's <lora> v2.safetensors"
CIVITAI_FILE = "from-civitai'.safetensors"
STATUS = 'ready"><img src=x onerror="window.__pwned=9">'  # the caption service's health status

INERT = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (/^on/i.test(a.name)) found.push(`${el.tagName} ${a.name}="${a.value}"`);
      if (/^(href|src|action|formaction)$/.test(a.name) && /^\\s*javascript:/i.test(a.value)) {
        found.push(`${el.tagName} ${a.name}="${a.value}"`);
      }
    }
  }
  return {pwned: window.__pwned ?? null, found};
}"""


class CaptionStub:
    """A caption service that answers its health check with a status holding markup."""

    def __init__(self):
        body = json.dumps({"status": STATUS, "device": "cpu"}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _lora_file(path, meta: dict) -> None:
    """A small .safetensors file (one LoRA layer) whose header carries `meta`."""
    header = {"__metadata__": meta,
              "diffusion_model.layers.0.attention.to_q.lora_A.weight": {"dtype": "F32", "shape": [4, 8],
                                                                        "data_offsets": [0, 128]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 128)


def _api(base: str, path: str, body: dict | None = None, method: str | None = None) -> dict:
    response = requests.request(method or ("POST" if body is not None else "GET"), base + path, json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def _wait_export(datasets: str, dataset_id: str) -> None:
    for _ in range(300):
        job = _api(datasets, f"/api/datasets/{dataset_id}/export")["job"]
        if job and job["status"] not in ("queued", "running"):
            assert job["status"] == "completed", job
            return
        time.sleep(0.1)
    raise TimeoutError("the export did not finish")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    logs = tmp_path_factory.mktemp("hostile-logs")
    caption = CaptionStub()
    env = {"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "CAPTION_URL": caption.url,
           "PORT": str(free_port()), "TRAINER_PORT": str(free_port())}
    servers = [ServerProcess("app", env, port_var="PORT", log_path=logs / "datasets.log"),
               ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=logs / "trainer.log")]
    try:
        for server in servers:
            server.start()
        datasets, trainer = servers[0].url, servers[1].url
        dataset_id = _api(datasets, "/api/datasets", {"name": DATASET, "trigger_word": TRIGGER})["id"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr(ZIPPED, image_bytes(3, size=(600, 600)))
            zipped.writestr(QUOTED, image_bytes(4, size=(600, 600)))
        files = [(COVER, image_bytes(1, size=(640, 640))), ("plain.png", image_bytes(2, size=(640, 640))),
                 ("gone'(1).png", image_bytes(5, size=(640, 640))), ("set'.zip", archive.getvalue())]
        requests.post(f"{datasets}/api/datasets/{dataset_id}/upload?wait=30", timeout=90,
                      files=[("files", (name, data, "application/octet-stream")) for name, data in files]
                      ).raise_for_status()
        names = [image["name"] for image in _api(datasets, f"/api/datasets/{dataset_id}/images?limit=50")["images"]]
        assert COVER in names and QUOTED in names and "_img src=x onerror=window.__pwned=3_.png" in names, names
        for name in names:
            _api(datasets, f"/api/datasets/{dataset_id}/captions/{quote(name, safe='')}", {"caption": CAPTION},
                 method="PUT")
        _api(datasets, f"/api/datasets/{dataset_id}/images/delete", {"names": ["gone'(1).png"]})  # Recently deleted
        gone = _api(datasets, "/api/datasets", {"name": "Gone " + HOSTILE})["id"]
        _api(datasets, f"/api/datasets/{gone}", method="DELETE")  # the index's Recently deleted
        _api(datasets, f"/api/datasets/{dataset_id}/export", {"name": "mia-set"})
        _wait_export(datasets, dataset_id)
        config = {"name": "mia-lora", "trigger_word": TRIGGER, "steps": 10, "sample_prompts": [PROMPT]}
        jobs = [_api(trainer, "/api/jobs", {"name": f"{JOB} {n}", "dataset": "mia-set", "config": {**config,
                                                                                                "steps": 10 + n}})
                ["job"]["id"] for n in (1, 2)]
        loras = Workspace(root).loras
        loras.mkdir(parents=True, exist_ok=True)
        _lora_file(loras / LORA_FILE, {
            "modelspec.title": "Title " + HOSTILE, "modelspec.trigger_phrase": "mia " + HOSTILE,
            "ss_output_name": HOSTILE, "ss_tag_frequency": json.dumps({HOSTILE: {HOSTILE: 1}}),
            "trigger_words": json.dumps(["mia " + HOSTILE, "second"]), "converted_from": HOSTILE,
            "source_url": "javascript:window.__pwned=5//"})
        _lora_file(loras / CIVITAI_FILE, {})
        # what a LoRA added from a Civitai link keeps beside it (trainer.library_facts.SOURCES_DIR)
        (loras / ".sources").mkdir(exist_ok=True)
        (loras / ".sources" / f"{CIVITAI_FILE}.json").write_text(json.dumps({
            "url": "javascript:window.__pwned=6//", "civitai_url": "javascript:window.__pwned=7//",
            "title": "Civitai " + HOSTILE, "trigger_words": ["civ " + HOSTILE]}))
        yield {"datasets": datasets, "trainer": trainer, "dataset_id": dataset_id, "jobs": jobs}
    finally:
        for server in servers:
            server.stop()
        caption.stop()


@pytest.fixture
def page(hostile):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        page.dialogs = []
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        yield page
        browser.close()


def assert_inert(page) -> None:
    """Nothing planted ran, nor waits to run (an event handler or a javascript: link)."""
    page.wait_for_timeout(300)  # an <img onerror> fires once its load fails: let it
    state = page.evaluate(INERT)
    assert state == {"pwned": None, "found": []}, f"{page.url}: {state}"
    assert page.dialogs == [], page.dialogs


def test_dataset_card_cover_of_an_image_named_with_quotes(hostile, page):
    from playwright.sync_api import expect

    page.goto(hostile["datasets"] + "/")
    card = page.locator(f".card[data-id='{hostile['dataset_id']}']")
    expect(card.locator(".title")).to_have_text(DATASET)
    expect(card.locator(".chip").first).to_have_text(TRIGGER)
    # "0 Mia's photo (1).png": its ' and ( ) stay inside the style's url('...'), so the cover shows
    cover = card.locator("a.cover")
    background = cover.evaluate("(el) => getComputedStyle(el).backgroundImage")
    assert "0%20Mia%27s%20photo%20%281%29.png" in background, background
    expect(page.locator("#deleted-list")).to_contain_text("Gone " + HOSTILE)
    assert_inert(page)


def test_dataset_page_shows_names_and_captions_as_text(hostile, page):
    from playwright.sync_api import expect

    page.goto(f"{hostile['datasets']}/d/{hostile['dataset_id']}")
    expect(page.locator("#ds-name")).to_have_text(DATASET)
    expect(page.locator("#trigger-chip")).to_have_text(TRIGGER)
    expect(page.locator(".tile")).to_have_count(4)
    for name in (COVER, QUOTED, "_img src=x onerror=window.__pwned=3_.png"):
        page.locator(".tile").filter(has=page.locator(f"img[alt={json.dumps(name)}]")).click()
        expect(page.locator("#ed-name")).to_have_text(name)
        expect(page.locator("#caption")).to_have_value(CAPTION)
    page.click("#btn-words")
    expect(page.locator("#words-list .word-row").first).to_be_visible()
    page.keyboard.press("Escape")
    page.click("#btn-replace")
    page.fill("#find-input", "Mia")
    expect(page.locator("#replace-matches")).to_contain_text(CAPTION)
    page.keyboard.press("Escape")
    page.click("#btn-trash")
    expect(page.locator("#trash-list")).to_contain_text("gone'(1).png")
    page.keyboard.press("Escape")
    page.click("#btn-export")
    expect(page.locator("#export-result")).to_contain_text("mia-set")
    page.keyboard.press("Escape")
    # a file the page refuses before sending it is named in the upload panel
    page.set_input_files("#file-input", files=[{"name": f"notes {HOSTILE}.exe", "mimeType": "application/x-msdownload",
                                                "buffer": b"MZ"}])
    expect(page.locator("#import-status")).to_contain_text(f"notes {HOSTILE}.exe")
    assert_inert(page)


def test_caption_service_status_is_text(hostile, page):
    """The caption service's health status (from CAPTION_URL, possibly another machine) is said, never parsed."""
    from playwright.sync_api import expect

    page.goto(f"{hostile['datasets']}/d/{hostile['dataset_id']}")
    page.wait_for_selector("#svc-status .dot", state="attached")  # the page has asked the service
    assert_inert(page)
    expect(page.locator("#svc-status")).to_contain_text(STATUS)
    assert page.locator("#svc-status img").count() == 0


def test_trainer_pages_show_job_names_and_prompts_as_text(hostile, page):
    from playwright.sync_api import expect

    trainer, jobs = hostile["trainer"], hostile["jobs"]
    page.goto(trainer + "/")
    expect(page.locator("#queue")).to_contain_text(f"{JOB} 1")
    assert_inert(page)

    page.goto(f"{trainer}/jobs/{jobs[0]}")
    expect(page.locator("#job-name")).to_have_text(f"{JOB} 1")
    # the config as it was given: Tom & Jerry's, not Tom \u0026 Jerry\u0027s
    config = page.locator("#config").text_content()
    assert json.dumps(PROMPT, ensure_ascii=False) in config, config
    assert json.dumps(TRIGGER, ensure_ascii=False) in config, config
    assert_inert(page)

    page.goto(f"{trainer}/new?from={jobs[0]}")
    expect(page.locator("#f-sample_prompts")).to_have_value(PROMPT)
    expect(page.locator("#f-trigger_word")).to_have_value(TRIGGER)
    expect(page.locator(".dataset-card .chip")).to_have_text(TRIGGER)
    assert_inert(page)

    page.goto(f"{trainer}/compare?jobs={jobs[0]},{jobs[1]}")
    expect(page.locator("#compare-settings")).to_contain_text(f"{JOB} 2")
    assert_inert(page)


def test_library_shows_file_metadata_as_text_and_no_script_link(hostile, page):
    from playwright.sync_api import expect

    trainer = hostile["trainer"]
    page.goto(trainer + "/library")
    card = page.locator(".lora-card").filter(has_text="Mia's <lora> v2")
    expect(card.locator("h3")).to_have_text("Mia's <lora> v2")
    expect(card.locator(".chip").first).to_have_text("mia " + HOSTILE)
    card.locator("details summary", has_text="File metadata").click()
    expect(card.locator("dd", has_text="Title " + HOSTILE)).to_have_count(1)
    civitai = page.locator(".lora-card").filter(has_text="from-civitai'")
    expect(civitai.locator(".chip").first).to_have_text("civ " + HOSTILE)
    assert_inert(page)

    for name in (LORA_FILE, CIVITAI_FILE):
        page.goto(f"{trainer}/library/try/{quote(name, safe='')}")
        expect(page.locator("h1")).to_have_text(name.removesuffix(".safetensors"))
        assert_inert(page)
