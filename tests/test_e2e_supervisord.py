"""The real thing, end to end: supervisord from the project's supervisord.conf in demo mode, then over HTTP
create a dataset, upload a ZIP (PNGs, an iPhone's HEIC, a phone clip), auto-caption it through the caption
service, export it, train a tiny LoRA, download it and check its keys; a second worker (GPU_WORKERS=2, as on a
pod with two GPUs) trains a job beside a long one; then stop supervisord and check both workers stopped cleanly."""

from __future__ import annotations

import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from studio import supervisor_env
from tests.helpers import REPO, free_port, wait_http

PASSWORD = "e2e-password"
AUTH = {"Authorization": f"Bearer {PASSWORD}"}
LORA_KEY = re.compile(r"^diffusion_model\.layers\.\d+\..+\.lora_A\.weight$")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


class Studio:
    """supervisord running the whole studio on free ports under a temp STUDIO_ROOT."""

    def __init__(self, root: Path):
        self.root = root
        self.ports = {"PORT": free_port(), "QWEN_PORT": free_port(), "TRAINER_PORT": free_port()}
        environ = {key: value for key, value in os.environ.items() if not key.startswith(("STUDIO_", "HF_HUB_OFF"))}
        environ.update({key: str(value) for key, value in self.ports.items()})
        environ.update({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1", "STUDIO_PASSWORD": PASSWORD,
                        "HOST": "127.0.0.1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
                        "STUDIO_RUN_DIR": str(root.parent / "run"),
                        "GPU_WORKERS": "2"})  # two workers, as on a pod with two GPUs (here sharing the CPU)
        self.env = supervisor_env.prepare(environ, python=sys.executable)
        self.proc: subprocess.Popen | None = None

    def url(self, service: str) -> str:
        port = {"datasets": "PORT", "caption": "QWEN_PORT", "trainer": "TRAINER_PORT"}[service]
        return f"http://127.0.0.1:{self.ports[port]}"

    def start(self) -> Studio:
        log = open(self.root / "supervisord.stdout", "wb")
        self.proc = subprocess.Popen(supervisor_env.supervisord_command(self.env), cwd=REPO, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for service in ("datasets", "caption", "trainer"):
            wait_http(self.url(service) + "/health", timeout=90, proc=self.proc)
        return self

    def ctl(self, *args: str) -> str:
        """What a user types in a pod shell: `python -m studio.supervisor_env ctl status fetch`."""
        result = subprocess.run([sys.executable, "-m", "studio.supervisor_env", "ctl", *args], cwd=REPO,
                                env=self.env, capture_output=True, text=True, timeout=60)
        return result.stdout

    def stop(self, timeout: float = 180) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)  # what a pod stop does to the foreground supervisord
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def log(self, name: str) -> str:
        path = self.root / "logs" / name
        return path.read_text("utf-8", errors="replace") if path.exists() else ""


def api(method: str, url: str, **kwargs) -> requests.Response:
    response = requests.request(method, url, headers=AUTH, timeout=60, **kwargs)
    assert response.status_code < 500, f"{method} {url}: {response.status_code} {response.text[:500]}"
    return response


def poll(fetch, done, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} did not finish within {timeout:.0f} s; last state: {value}")


def dataset_zip() -> bytes:
    """Three pictures (one an iPhone's HEIC in Display P3) and a phone clip that gives two frames."""
    import pillow_heif
    from PIL import Image

    from tests.icc_profiles import p3_profile
    from tests.videos import video_bytes

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, color in enumerate([(200, 40, 40), (40, 160, 60), (30, 60, 200)]):
            image = Image.new("RGB", (96, 80), color)
            for x in range(0, 96, 8):  # some structure, so the images are not near-duplicates
                for y in range(index * 10, 80, 16):
                    image.putpixel((x, y), (255, 255, 255))
            data = io.BytesIO()
            if index == 1:
                image.save(data, format="HEIF", quality=95, icc_profile=p3_profile())
                archive.writestr(f"cats/nested/cat_{index}.heic", data.getvalue())
            else:
                image.save(data, format="PNG")
                archive.writestr(f"cats/nested/cat_{index}.png", data.getvalue())
        archive.writestr("cats/clips/cat.mp4", video_bytes([7, 8]))
    return buffer.getvalue()


@pytest.fixture
def studio(demo_root):
    # demo_root links the session's tiny models in: the fetcher checks them and reports them ready.
    studio = Studio(demo_root)
    try:
        yield studio.start()
    finally:
        studio.stop()


def test_whole_studio_end_to_end_under_supervisord(studio):
    datasets, trainer = studio.url("datasets"), studio.url("trainer")

    # every service is up and guarded by the password; the fetcher reports the demo models ready
    for service in ("datasets", "caption", "trainer"):
        assert requests.get(studio.url(service) + "/health", timeout=10).status_code == 200
    assert requests.get(datasets + "/api/datasets", timeout=10).status_code == 401
    status = poll(lambda: studio.ctl("status", "fetch"), lambda out: "EXITED" in out, 120, "the model fetcher")
    assert "EXITED" in status
    programs = ("datasets", "caption", "trainer", "worker", "worker-2")
    poll(lambda: studio.ctl("status"), lambda out: all(re.search(rf"^{p}\s+RUNNING", out, re.M) for p in programs),
         30, "supervisord's RUNNING state")  # RUNNING once a program has stayed up for startsecs

    # dataset + ZIP upload
    created = api("POST", datasets + "/api/datasets", json={"name": "E2E cats", "trigger_word": "sks"})
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    upload = api("POST", f"{datasets}/api/datasets/{dataset_id}/upload?wait=20",
                 files={"files": ("cats.zip", dataset_zip(), "application/zip")})
    assert upload.status_code in (200, 201, 202), upload.text
    detail = poll(lambda: api("GET", f"{datasets}/api/datasets/{dataset_id}").json(),
                  lambda d: d["images"] == 5, 60, "the ZIP import")
    assert detail["captioned"] == 0

    # auto-caption through the caption service (tiny random model: cap the tokens)
    started = api("POST", f"{datasets}/api/datasets/{dataset_id}/caption",
                  json={"style": "short", "max_tokens": 12, "mode": "overwrite"})
    assert started.status_code == 202, started.text
    job = poll(lambda: api("GET", f"{datasets}/api/datasets/{dataset_id}/caption").json()["job"],
               lambda j: j and j["status"] not in ("queued", "running"), 180, "auto-captioning")
    assert job["status"] == "completed", job
    detail = api("GET", f"{datasets}/api/datasets/{dataset_id}").json()
    assert detail["captioned"] == 5, detail

    # export for training
    exported = api("POST", f"{datasets}/api/datasets/{dataset_id}/export", json={"name": "e2e-cats"})
    assert exported.status_code == 202, exported.text
    job = poll(lambda: api("GET", f"{datasets}/api/datasets/{dataset_id}/export").json()["job"],
               lambda j: j and j["status"] not in ("queued", "running"), 60, "the export")
    assert job["status"] == "completed", job
    export_dir = studio.root / "trainer" / "datasets" / "e2e-cats"
    assert (export_dir / "dataset.json").is_file()
    captions = sorted(export_dir.glob("*.txt"))
    assert len(captions) == 5 and all(p.read_text().startswith("sks") for p in captions)
    assert (export_dir / "cat_1.jpg").is_file()  # the HEIC, as a JPEG the trainer reads

    # a tiny training job on the demo model
    config = {"steps": 6, "resolutions": [64], "rank": 4, "sample_every": 3, "save_every": 3,
              "sample_width": 64, "sample_height": 64, "sample_steps": 2, "sample_prompts": ["sks cat"],
              "gradient_checkpointing": False}
    created = api("POST", trainer + "/api/jobs", json={"name": "e2e", "dataset": "e2e-cats", "config": config})
    assert created.status_code == 201, created.text
    job_id = created.json()["job"]["id"]
    detail = poll(lambda: api("GET", f"{trainer}/api/jobs/{job_id}").json(),
                  lambda d: d["job"]["status"] in ("completed", "failed", "stopped"), 240, "the training job",
                  interval=1.0)
    assert detail["job"]["status"] == "completed", (detail, studio.log("worker.log")[-3000:])
    assert detail["lora"] and detail["lora"]["file"].endswith(".safetensors")

    # download the LoRA and check it is keyed the way ComfyUI loads Z-Image LoRAs
    response = api("GET", f"{trainer}/api/jobs/{job_id}/files/{detail['lora']['path']}")
    assert response.status_code == 200
    from safetensors import safe_open

    lora_file = studio.root / "downloaded.safetensors"
    lora_file.write_bytes(response.content)
    with safe_open(str(lora_file), "pt") as handle:
        keys = list(handle.keys())
    assert keys and any(LORA_KEY.match(key) for key in keys), keys[:10]
    assert all(key.startswith("diffusion_model.") for key in keys)

    # a long job is running when the pod stops
    long_config = {**config, "steps": 100_000, "sample_every": 0, "save_every": 100_000}
    created = api("POST", trainer + "/api/jobs", json={"name": "e2e-long", "dataset": "e2e-cats",
                                                        "config": long_config})
    assert created.status_code == 201, created.text
    long_id = created.json()["job"]["id"]
    poll(lambda: api("GET", f"{trainer}/api/jobs/{long_id}").json()["job"],
         lambda j: j["status"] == "running" and (j.get("step") or 0) >= 2, 120, "the long job's first steps")
    # the second worker trains another job beside it
    assert len(api("GET", trainer + "/api/jobs").json()["workers"]) == 2
    created = api("POST", trainer + "/api/jobs", json={"name": "e2e-beside", "dataset": "e2e-cats",
                                                        "config": {**config, "sample_every": 0}})
    beside = poll(lambda: api("GET", f"{trainer}/api/jobs/{created.json()['job']['id']}").json()["job"],
                  lambda j: j["status"] in ("completed", "failed", "stopped"), 240, "the job beside the long one")
    assert beside["status"] == "completed", (beside, studio.log("worker-2.log")[-3000:])
    assert api("GET", f"{trainer}/api/jobs/{long_id}").json()["job"]["status"] == "running"

    # a pod stop: supervisord gets SIGTERM and stops every program; the worker checkpoints and exits cleanly
    assert studio.stop() == 0
    supervisord_log = studio.log("supervisord.log")
    assert re.search(r"stopped: worker \(exit status 0\)", supervisord_log), supervisord_log[-2000:]
    assert re.search(r"stopped: worker-2 \(exit status 0\)", supervisord_log), supervisord_log[-2000:]
    assert "SIGKILL" not in supervisord_log
    with sqlite3.connect(studio.root / "studio.db") as db:
        assert db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0] == "completed"
        # not stopped by the user: interrupted, and the worker continues it when the pod starts again
        row = db.execute("SELECT status, resumable FROM jobs WHERE id = ?", (long_id,)).fetchone()
        assert row == ("interrupted", 1)
    checkpoints = list((studio.root / "trainer" / "jobs" / long_id / "checkpoints").glob("step_*/lora.safetensors"))
    assert checkpoints, "the stopped job left no checkpoint to resume from"
