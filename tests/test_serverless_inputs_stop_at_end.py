"""RunPod stopping a job (cancelled, or past its execution timeout) after its last step, while the engine renders
the final previews, ends it as stopped (its last checkpoint kept for a retry), not as an internal error."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import threading

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
