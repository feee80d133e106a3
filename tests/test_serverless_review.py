"""The serverless worker as a paying API user meets it: what would waste GPU time or lose a result is refused
before any download (a key that may only read, an output prefix the store cannot hold, a hub token it refuses),
a link that trickles is given up, and RunPod's stop reaches a job that is downloading."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import asyncio
import http.server
import json
import threading

import boto3
import pytest

from serverless import dataset as serverless_dataset
from serverless.dataset import DatasetInputError, fetch_dataset
from serverless.handler import handler, stoppable_handler
from tests.moto_s3 import ADMIN_REGION, MotoS3
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_serverless import GOOD_CONFIG, worker_env  # noqa: F401 - a fixture


@pytest.fixture
def moto():
    server = MotoS3().start()
    yield server
    server.stop()


def read_only_key(moto: MotoS3) -> tuple[str, str]:
    """A second IAM user of the moto server whose key may list and read, not write."""
    iam = boto3.client("iam", endpoint_url=moto.endpoint, region_name=ADMIN_REGION, aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    user = f"reader-{moto.port}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_a_key_that_may_only_read_fails_before_anything_downloads(worker_env, moto, studio_root):
    moto.make_bucket("ro-out", {"sets/anna/1.png": b"never fetched"})
    access, secret = read_only_key(moto)
    for key, value in moto.env(S3_BUCKET="ro-out", S3_ACCESS_KEY_ID=access, S3_SECRET_ACCESS_KEY=secret).items():
        worker_env.setenv(key, value)
    with moto.checking_credentials():
        result = handler({"id": "ro-1", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/anna"}}})
    assert result["error"].startswith("Access to bucket 'ro-out' was denied while writing loras/ro-1/"), result
    assert "read and write permission" in result["error"]
    assert not (studio_root / "serverless" / "ro-1" / "download").exists()


def test_the_write_check_leaves_nothing_in_the_bucket(worker_env, moto):
    moto.make_bucket("rw-out")
    for key, value in moto.env(S3_BUCKET="rw-out").items():
        worker_env.setenv(key, value)
    with moto.checking_credentials():
        result = handler({"id": "rw-1", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "nothing/here"},
                                                  "output_prefix": "runs"}})
    assert "Nothing was found" in result["error"]
    assert moto.keys("rw-out") == []


@pytest.mark.parametrize("prefix", ["a" * 600, "runs/" + "é" * 300, "runs\nanna", "runs/\tx"])
def test_an_output_prefix_the_store_cannot_hold_is_refused_at_once(worker_env, prefix):
    result = handler({"id": "p", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/a"},
                                           "output_prefix": prefix}})
    assert result["details"] == [{"field": "output_prefix", "message": "Not a valid prefix."}], result
    assert "at most 512 bytes" in result["error"]


def test_stopping_when_overfitting_without_held_out_images_is_refused_as_on_the_pod(worker_env):
    result = handler({"id": "o", "input": {"job_config": {**GOOD_CONFIG, "stop_when_overfitting": True},
                                           "dataset": {"prefix": "sets/a"}}})
    assert result["details"] == [{"field": "stop_when_overfitting", "message": "Needs holdout_images."}], result
    ok = handler({"id": "o2", "input": {"job_config": {**GOOD_CONFIG, "stop_when_overfitting": True,
                                                       "holdout_images": 1}, "dataset": {"prefix": "sets/a"}}})
    assert "S3_BUCKET" in ok["error"]  # past the input checks: only the storage is missing here


def test_a_hub_token_the_hub_refuses_fails_before_anything_downloads(worker_env, hub):
    worker_env.setenv("HF_ENDPOINT", hub.url)
    worker_env.setenv("HF_TOKEN", "hf_revoked")
    hub.user = None  # every token refused
    result = handler({"id": "h", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/a"},
                                           "hub": {"repo": "anna-lora"}}})
    assert result["error"].startswith("Hugging Face refused HF_TOKEN"), result
    assert result["details"][0]["field"] == "hub"
    hub.user = "me"
    passed = handler({"id": "h2", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/a"},
                                            "hub": {"repo": "anna-lora"}}})
    assert "S3_BUCKET" in passed["error"]  # a token the hub knows passes on to the storage check


class Trickle(http.server.BaseHTTPRequestHandler):
    """Promises a 10 MB ZIP and sends a byte at a time, never fast enough, never stopping by itself."""

    asked = threading.Event()
    closed = threading.Event()
    done = threading.Event()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).asked.set()
        self.send_response(200)
        self.send_header("Content-Length", str(10 << 20))
        self.end_headers()
        try:
            while not type(self).done.wait(0.2):
                self.wfile.write(b"P")
                self.wfile.flush()
        except OSError:
            type(self).closed.set()

    def log_message(self, *args):
        return None


@pytest.fixture
def trickle():
    Trickle.asked, Trickle.closed, Trickle.done = threading.Event(), threading.Event(), threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/set.zip"
    Trickle.done.set()
    server.shutdown()
    server.server_close()


def test_a_link_that_trickles_is_given_up(trickle, make_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(serverless_dataset, "STALL_S", 1.5)
    with pytest.raises(DatasetInputError, match="The dataset link sent less than 1024 KB in 2 s"):
        fetch_dataset({"url": trickle}, make_settings(ALLOW_PRIVATE_URLS=1), tmp_path / "w" / "raw")
    assert not (tmp_path / "w" / "dataset.zip").exists()


def test_runpod_stopping_a_job_ends_its_download(worker_env, moto, trickle):
    moto.make_bucket("stop-out")
    for key, value in moto.env(S3_BUCKET="stop-out", ALLOW_PRIVATE_URLS=1).items():
        worker_env.setenv(key, value)
    job = {"id": "stop-1", "input": {"job_config": GOOD_CONFIG, "dataset": {"url": trickle}}}

    async def cancel_while_downloading():
        task = asyncio.ensure_future(stoppable_handler(job))  # what `python -m serverless` gives the SDK
        assert await asyncio.to_thread(Trickle.asked.wait, 60)
        task.cancel()  # what the SDK does when RunPod signals a stop
        finished, _ = await asyncio.wait({task}, timeout=60)  # a guard against a hang, not a measure
        hung_up = await asyncio.to_thread(Trickle.closed.wait, 10)
        Trickle.done.set()  # a worker that did not stop gets to the end of the link now
        return task, finished, hung_up

    task, finished, hung_up = asyncio.run(cancel_while_downloading())
    assert task in finished and task.cancelled()  # the job ended, its download too
    assert hung_up  # the worker hung up on the link


def test_a_job_not_stopped_runs_through_the_same_entry(worker_env):
    result = asyncio.run(stoppable_handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": "nope"}}))
    assert result["error"].startswith("`dataset` must be an object")


def test_a_dataset_prefix_above_the_outputs_never_trains_on_earlier_previews(moto, make_settings, tmp_path):
    """A dataset prefix of "" (the whole bucket) in the bucket the LoRAs go to: earlier jobs' previews under the output
    prefix are no part of it; a prefix inside the outputs, asked for on purpose, still is."""
    from tests.test_s3_import import png

    moto.make_bucket("one-bucket", {"anna/a.png": png((250, 0, 0)), "anna/a.txt": b"anna in red",
                                    "loras/job-1/samples/step_000100/0.png": png((0, 0, 250)),
                                    "loras/job-1/lora.safetensors": b"\0" * 64})
    settings = make_settings(**moto.env(S3_BUCKET="one-bucket"))
    raw = tmp_path / "all" / "raw"
    fetch_dataset({"prefix": ""}, settings, raw, outputs="loras/")
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file()) == ["anna/a.png", "anna/a.txt"]
    inside = tmp_path / "inside" / "raw"
    fetch_dataset({"prefix": "loras/job-1/samples/"}, settings, inside, outputs="loras/")
    assert [p.name for p in inside.rglob("*.png")] == ["0.png"]
