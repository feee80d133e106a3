"""The serverless worker end to end: `python -m serverless --test_input ...` (the runpod SDK's local test
mode) trains the tiny demo model on a dataset from moto's S3 and uploads the LoRA."""

from __future__ import annotations

import ast
import http.server
import io
import json
import subprocess
import sys
import threading

import pytest
import requests
from PIL import Image

from tests.fake_hub import COMMIT
from tests.helpers import REPO
from tests.moto_s3 import MotoS3
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture

pytestmark = pytest.mark.slow


class _ProgressCatcher(http.server.BaseHTTPRequestHandler):
    """Stands in for RunPod's job-output webhook: records every progress update the SDK posts."""

    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        return None


@pytest.fixture
def progress_webhook():
    _ProgressCatcher.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProgressCatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/job-output?id=$ID", _ProgressCatcher.received
    server.shutdown()
    server.server_close()


def png(color, size=(96, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def run_worker(job: dict, env: dict, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serverless", "--test_input", json.dumps(job)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def job_result(stdout: str) -> dict:
    """The SDK logs `Job result: {...}` (a Python repr) in local test mode."""
    line = next(line for line in stdout.splitlines() if "Job result: " in line)
    return ast.literal_eval(line.split("Job result: ", 1)[1].strip())


def test_serverless_trains_tiny_model_from_moto_bucket(demo_root, progress_webhook, tmp_path, hub):  # noqa: F811
    webhook, received = progress_webhook
    moto = MotoS3().start()
    try:
        moto.make_bucket("serverless-e2e", {
            "datasets/anna/1.png": png((200, 40, 40)),
            "datasets/anna/1.txt": "[trigger] in red",
            "datasets/anna/2.png": png((40, 200, 40), (80, 96)),
            "datasets/anna/2.txt": "[trigger] in green",
            "datasets/anna/3.png": png((40, 40, 200)),
            "datasets/anna/readme.md": b"not an image",
            "datasets/anna/broken.png": b"\x89PNG broken",
            "datasets/close/1.png": png((230, 200, 40)),
            "datasets/close/1.txt": "[trigger] close up",
        })
        env = {
            **{k: v for k, v in __import__("os").environ.items() if not k.startswith(("S3_", "R2_"))},
            **moto.env(S3_BUCKET="serverless-e2e", S3_OUTPUT_PREFIX="runs"),
            "STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "PYTHONPATH": str(REPO),
            "RUNPOD_WEBHOOK_POST_OUTPUT": webhook, "RUNPOD_LOG_LEVEL": "INFO",
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2",
        }
        job_config = {"name": "anna-sls", "trigger_word": "annaxyz", "steps": 4, "resolutions": [64],
                      "rank": 4, "sample_every": 4, "save_every": 2, "sample_width": 64, "sample_height": 64,
                      "sample_steps": 2, "sample_prompts": ["[trigger] portrait"]}
        job = {"id": "sls-e2e-1", "input": {"job_config": job_config,
                                            "dataset": {"bucket": "serverless-e2e", "prefix": "datasets/anna"}}}
        done = run_worker(job, env)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        result = job_result(done.stdout)["output"]
        assert result["steps"] == 4
        assert isinstance(result["final_loss"], float) and result["seconds"] > 0
        assert isinstance(result["final_smooth_loss"], float)
        assert result["eval_loss"] > 0  # measured before the first step and after the last
        assert "leak" in result and (result["leak"] is None or result["leak"] >= 0)  # trainer.leak, final previews
        assert result["images"] == 3
        assert {s["file"] for s in result["skipped"]} == {"readme.md", "broken.png"}
        assert result["lora_key"] == "runs/sls-e2e-1/anna-sls.safetensors"
        keys = moto.keys("serverless-e2e", "runs/sls-e2e-1/")
        assert result["lora_key"] in keys and "runs/sls-e2e-1/config.json" in keys
        assert "runs/sls-e2e-1/eval.jsonl" in keys
        assert any(key.startswith("runs/sls-e2e-1/samples/") for key in keys)
        # the presigned link downloads the same LoRA
        stored = moto.client().get_object(Bucket="serverless-e2e", Key=result["lora_key"])["Body"].read()
        assert requests.get(result["lora_url"], timeout=30).content == stored
        # progress went through runpod.serverless.progress_update to the (stand-in) webhook
        updates = [r["body"] for r in received]
        assert all(u["status"] == "IN_PROGRESS" for u in updates)
        training = [u["output"] for u in updates if u["output"].get("phase") == "training"]
        assert training and "step" in training[-1] and "loss" in training[-1]
        assert updates[-1]["output"]["phase"] == "done"
        # no secret in anything the worker printed or returned
        for secret in (moto.secret_key,):
            assert secret not in output and secret not in json.dumps(result)
        # the work folder is cleaned after a successful upload
        assert not (demo_root / "serverless" / "sls-e2e-1").exists()

        # the next run goes on from that LoRA, on two datasets with their repeats
        more = {**job_config, "name": "anna-sls-2", "steps": 2, "sample_every": 0}
        job = {"id": "sls-e2e-2", "input": {"job_config": more, "start_lora": {"key": result["lora_key"]},
                                            "datasets": [{"prefix": "datasets/anna"},
                                                         {"prefix": "datasets/close", "repeats": 3}],
                                            "hub": {"repo": "anna-sls-2"}}}  # and to Hugging Face
        done = run_worker(job, {**env, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_write", "HF_HUB_OFFLINE": "0"})
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        second = job_result(done.stdout)["output"]
        assert second["steps"] == 2 and second["images"] == 4, second
        assert second["hub"] == {"repo": "me/anna-sls-2", "url": f"{hub.url}/me/anna-sls-2", "commit": COMMIT,
                                 "private": True}, second
        assert hub.repos["me/anna-sls-2"]["anna-sls-2.safetensors"] == \
            moto.client().get_object(Bucket="serverless-e2e", Key=second["lora_key"])["Body"].read()
        assert hub.cards[-1]["instance_prompt"] == "annaxyz" and "me/anna-sls-2" in hub.private
        stored = moto.client().get_object(Bucket="serverless-e2e", Key=second["lora_key"])["Body"].read()
        header = json.loads(stored[8:8 + int.from_bytes(stored[:8], "little")])
        assert header["__metadata__"]["started_from"] == "anna-sls"
        assert json.loads(header["__metadata__"]["ss_dataset_dirs"]) == {
            "sls-e2e-2-1": {"n_repeats": 1, "img_count": 3}, "sls-e2e-2-2": {"n_repeats": 3, "img_count": 1}}

        bad = run_worker({"id": "sls-bad", "input": {"job_config": {"stepz": 1}, "dataset": {"prefix": "x"}}},
                         env, timeout=120)
        assert bad.returncode == 1  # the SDK marks the job failed; the handler itself returned normally
        assert "The job config is invalid." in bad.stdout + bad.stderr
        assert "Traceback" not in bad.stdout + bad.stderr
    finally:
        moto.stop()
