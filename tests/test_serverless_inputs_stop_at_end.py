"""RunPod stopping a job (cancelled, or past its execution timeout) after its last step, while the engine renders
the final previews, ends it as stopped (its last checkpoint kept for a retry), not as an internal error."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import threading

import pytest

import trainer.engine
from serverless.handler import handler
from tests.test_serverless import GOOD_CONFIG, image_bytes, worker_env  # noqa: F401 - a fixture
from tests.test_serverless_review import moto  # noqa: F401 - a fixture


def test_a_stop_while_the_final_previews_render_ends_the_job_as_stopped(worker_env, moto, monkeypatch):
    moto.make_bucket("stop-end", {"sets/anna/a.png": image_bytes(), "sets/anna/a.txt": b"anna"})
    for key, value in moto.env(S3_BUCKET="stop-end").items():
        worker_env.setenv(key, value)
    stop = threading.Event()

    def train_then_stopped_in_the_previews(config, dataset_dir, job_dir, paths, control, progress):
        stop.set()  # RunPod's stop, heard after the last step
        control.request_stop()
        control.check()  # what the sampler does between two of its steps
        raise AssertionError("not stopped")

    monkeypatch.setattr(trainer.engine, "train", train_then_stopped_in_the_previews)
    result = handler({"id": "stop-end", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/anna"}}}, stop)
    assert result == {"error": "The job was stopped before it finished.", "details": []}


def test_a_run_completed_after_runpods_stop_is_not_uploaded(worker_env, moto, monkeypatch):
    """The engine completes a run stopped during its final previews (every step is trained by then); for RunPod the
    job was cancelled or timed out all the same, so nothing more is uploaded."""
    moto.make_bucket("stop-done", {"sets/anna/a.png": image_bytes(), "sets/anna/a.txt": b"anna"})
    for key, value in moto.env(S3_BUCKET="stop-done").items():
        worker_env.setenv(key, value)
    stop = threading.Event()

    def trained_then_stopped(config, dataset_dir, job_dir, paths, control, progress):
        stop.set()
        return {"stopped": False, "steps": 1, "lora_path": str(job_dir / "nothing.safetensors")}

    monkeypatch.setattr(trainer.engine, "train", trained_then_stopped)
    result = handler({"id": "stop-done", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/anna"}}},
                     stop)
    assert result == {"error": "The job was stopped before it finished.", "details": []}


def test_runpods_stop_ends_the_unpacking_of_a_zip(worker_env, moto, monkeypatch):
    """A job cancelled (or past its time) while its dataset ZIP unpacked went on unpacking to the end, on the bill,
    and then stopped while the models loaded: the unpacking ends at the stop too."""
    from serverless import dataset
    from tests.test_serverless import _zip

    moto.make_bucket("stop-zip", {"sets/anna/big.zip": _zip({f"{i}.png": image_bytes() for i in range(20)})})
    for key, value in moto.env(S3_BUCKET="stop-zip").items():
        worker_env.setenv(key, value)
    stop = threading.Event()
    real = dataset._unpack_containers

    def downloaded_then_cancelled(files, settings):
        stop.set()  # RunPod's stop, heard as the unpacking begins
        return real(files, settings)

    monkeypatch.setattr(dataset, "_unpack_containers", downloaded_then_cancelled)
    monkeypatch.setattr(trainer.engine, "train", lambda *args: pytest.fail("it trained after the stop"))
    result = handler({"id": "stop-zip", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/anna"}}},
                     stop)
    assert result == {"error": "The job was stopped before it finished.", "details": []}
