"""A page on another port of the same host cannot act with the user's login, in a real browser.

The dataset manager and the trainer run as real servers with a password; chromium logs in through the
login page, then opens a page served from a third port (standing in for ComfyUI or any tool on the
pod) that tries the upload, job controls, a delete and a logout with the user's cookie. Nothing
changes, the servers' logs show each attempt arrived with the cookie and was refused (403, not 401),
and the studio's own pages still upload, stop a job and log out.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser_studio import ARGS, CHROMIUM, browser_marks
from tests.helpers import ServerProcess, free_port
from tests.test_datasets_support import image_bytes
from tests.test_trainer_worker import TINY_CONFIG, make_export

PASSWORD = "correct horse"
BEARER = {"Authorization": f"Bearer {PASSWORD}"}

pytestmark = browser_marks

ATTACK_PAGE = """<!doctype html>
<html><body>
<h1>Another tool on the pod</h1>
<img src="{D}/logout" alt="">
<iframe name="sink"></iframe>
<form id="form-post" method="post" action="{T}/api/jobs/{job}/stop" target="sink"></form>
<script>
(async () => {{
  const png = Uint8Array.from(atob("{png}"), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("files", new Blob([png], {{ type: "image/png" }}), "evil.png");
  window.blockedByBrowser = [];
  const send = async (url, method, body, mode = "no-cors") => {{
    try {{ await fetch(url, {{ method, body, mode, credentials: "include" }}); }}
    catch (e) {{ window.blockedByBrowser.push(`${{method}} ${{url}}`); }}
  }};
  await send("{D}/api/datasets/{dataset}/upload", "POST", form);
  await send("{T}/api/jobs/{job}/stop", "POST");
  await send("{T}/api/jobs/{job}/clone", "POST");
  // no-cors allows only GET/HEAD/POST; a DELETE needs a CORS preflight, which the studio never grants
  await send("{D}/api/datasets/{dataset}", "DELETE", null, "cors");
  const sink = document.querySelector("iframe");
  sink.addEventListener("load", () => {{ document.title = "attacked"; }});
  document.getElementById("form-post").submit();
}})();
</script>
</body></html>"""


def _api(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {**BEARER, **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class AttackerSite:
    """A plain page server on its own port of 127.0.0.1: same host as the studio, another origin."""

    def __init__(self, html: str):
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def studio(studio_root, tmp_path):
    """Dataset manager and trainer on their own ports, one workspace, one password."""
    ports = {"PORT": str(free_port()), "TRAINER_PORT": str(free_port())}
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_PASSWORD": PASSWORD, "STUDIO_DEMO": "1", "HOST": "127.0.0.1",
           "CAPTION_URL": "http://127.0.0.1:9", **ports}
    make_export(studio_root, "tiny-set", count=2)
    datasets = ServerProcess("app", env, log_path=tmp_path / "datasets.log").start()
    try:
        trainer = ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=tmp_path / "trainer.log").start()
        try:
            yield datasets, trainer
        finally:
            trainer.stop()
    finally:
        datasets.stop()


def test_another_port_cannot_use_the_login(studio, tmp_path, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    datasets, trainer = studio
    D, T = datasets.url, trainer.url
    dataset_id = _api(D + "/api/datasets", "POST", {"name": "victim"})["id"]
    job_id = _api(T + "/api/jobs", "POST", {"name": "victim job", "recipe": "zimage-turbo", "dataset": "tiny-set",
                                            "config": TINY_CONFIG})["job"]["id"]
    png = base64.b64encode(image_bytes(1, size=(64, 48))).decode()
    attacker = AttackerSite(ATTACK_PAGE.format(D=D, T=T, dataset=dataset_id, job=job_id, png=png))
    own_image = tmp_path / "own.png"
    own_image.write_bytes(image_bytes(2, size=(64, 48)))
    shots = artifacts_dir / "security"
    shots.mkdir(exist_ok=True)
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # log in through the real login page; the cookie serves both ports of 127.0.0.1
            page.goto(D + "/")
            page.wait_for_url("**/login**")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(D + "/")
            expect(page.locator(".logout")).to_be_visible()

            # the other port's page tries everything with the user's cookie
            page.goto(attacker.url + "/")
            page.wait_for_function("document.title === 'attacked'")
            assert page.evaluate("window.blockedByBrowser") == [f"DELETE {D}/api/datasets/{dataset_id}"]
            page.screenshot(path=str(shots / "01-attacker-page.png"))
            jobs = _api(T + "/api/jobs")["jobs"]
            states = [(job["id"], job["status"]) for job in jobs]
            assert states == [(job_id, "queued")], "another port's stop or clone worked"

            # positive control: the studio's own pages still work with the same cookie
            page.goto(f"{D}/d/{dataset_id}")  # still logged in: the <img> on /logout did nothing
            page.set_input_files("#file-input", str(own_image))
            expect(page.locator("#import-status")).to_contain_text("Imported 1 image", timeout=30_000)
            page.goto(f"{T}/jobs/{job_id}")
            page.click("#btn-stop")
            page.wait_for_function(f"""async () => (await (await fetch('/api/jobs/{job_id}')).json())
                                       .job.status === 'stopped'""")
            page.screenshot(path=str(shots / "02-own-page-stopped-the-job.png"))
            page.click(".logout")
            page.wait_for_url("**/login")
            assert page.request.get(D + "/api/datasets").status == 401
            browser.close()
    finally:
        attacker.close()

    images = _api(f"{D}/api/datasets/{dataset_id}/images")["images"]
    assert [row["name"] for row in images] == ["own.png"], "the other port's upload got in"
    jobs = _api(T + "/api/jobs")["jobs"]
    assert [(job["id"], job["status"]) for job in jobs] == [(job_id, "stopped")], "the other port cloned the job"
    assert errors == []

    # each attempt reached the service with the cookie (past the 401) and was refused by the origin check
    attacker_origin = f"Origin='{attacker.url}'"
    datasets_log = (tmp_path / "datasets.log").read_text()
    trainer_log = (tmp_path / "trainer.log").read_text()
    assert f"refused POST /api/datasets/{dataset_id}/upload: {attacker_origin}" in datasets_log
    assert f'"DELETE /api/datasets/{dataset_id} HTTP/1.1"' not in datasets_log  # the preflight stopped it
    assert trainer_log.count(f"refused POST /api/jobs/{job_id}/stop: {attacker_origin}") == 2  # fetch and form
    assert f"refused POST /api/jobs/{job_id}/clone: {attacker_origin}" in trainer_log
    assert f'"POST /api/datasets/{dataset_id}/upload HTTP/1.1" 403' in datasets_log
    assert f'"POST /api/jobs/{job_id}/clone HTTP/1.1" 403' in trainer_log
