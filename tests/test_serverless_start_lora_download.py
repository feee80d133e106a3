"""The serverless worker's download of the LoRA to start from, as a paying API user meets it: its bytes show in the
progress updates, and RunPod's stop ends it at once (not once a slow link has sent the whole file)."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import asyncio
import os
import threading

import pytest

from serverless.dataset import JobStopped
from serverless.handler import stoppable_handler
from serverless.sources import fetch_start_lora
from tests.moto_s3 import MotoS3
from tests.test_serverless import GOOD_CONFIG, worker_env  # noqa: F401 - a fixture
from tests.test_serverless_review import Trickle, trickle  # noqa: F401 - a fixture

LORA_BYTES = 3 << 20


@pytest.fixture
def moto():
    server = MotoS3().start()
    yield server
    server.stop()


def test_runpod_stopping_a_job_ends_its_start_lora_download(worker_env, moto, trickle, studio_root):
    moto.make_bucket("start-out")
    for key, value in moto.env(S3_BUCKET="start-out", ALLOW_PRIVATE_URLS=1).items():
        worker_env.setenv(key, value)
    job = {"id": "start-stop-1", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "never/fetched"},
                                           "start_lora": {"url": trickle.replace("set.zip", "start.safetensors")}}}

    async def cancel_while_downloading():
        task = asyncio.ensure_future(stoppable_handler(job))
        assert await asyncio.to_thread(Trickle.asked.wait, 60)
        task.cancel()  # what the SDK does when RunPod signals a stop
        finished, _ = await asyncio.wait({task}, timeout=60)  # a guard against a hang, not a measure
        hung_up = await asyncio.to_thread(Trickle.closed.wait, 10)
        Trickle.done.set()
        return task, finished, hung_up

    task, finished, hung_up = asyncio.run(cancel_while_downloading())
    assert task in finished and task.cancelled()
    assert hung_up  # the worker hung up on the link instead of waiting for its 10 MB
    job_dir = studio_root / "serverless" / "start-stop-1" / "job"
    assert not [path for path in job_dir.rglob("*") if path.is_file()]  # no half LoRA taken for a whole one


def test_a_start_lora_from_the_bucket_shows_its_bytes(moto, make_settings, tmp_path):
    moto.make_bucket("loras-in", {"runs/anna.safetensors": os.urandom(LORA_BYTES)})
    settings = make_settings(**moto.env(S3_BUCKET="loras-in"))
    updates = []
    target = fetch_start_lora({"key": "runs/anna.safetensors"}, settings, tmp_path / "job" / "start.safetensors",
                              updates.append)
    assert target.stat().st_size == LORA_BYTES
    counted = [update["bytes_done"] for update in updates if "bytes_done" in update]
    assert counted and counted == sorted(counted) and counted[-1] == LORA_BYTES  # a running total, not blocks
    assert all(update["phase"] == "downloading" for update in updates)


def test_a_stop_ends_a_start_lora_download_from_the_bucket(moto, make_settings, tmp_path):
    moto.make_bucket("loras-stop", {"runs/anna.safetensors": os.urandom(LORA_BYTES)})
    settings = make_settings(**moto.env(S3_BUCKET="loras-stop"))
    stop = threading.Event()

    def stop_on_first_bytes(update: dict) -> None:
        if update.get("bytes_done"):
            stop.set()

    target = tmp_path / "job" / "start.safetensors"
    with pytest.raises(JobStopped):
        fetch_start_lora({"key": "runs/anna.safetensors"}, settings, target, stop_on_first_bytes, stop)
    assert not target.exists()  # a retry downloads it again instead of starting from a part
