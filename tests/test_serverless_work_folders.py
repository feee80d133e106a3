"""A serverless worker that lives through many failed jobs does not fill its disk: a failed job's folder (its
checkpoints, for RunPod's retry of the same job) goes once no job has used it for hours, and never while a job,
of this worker or another on the same network volume, runs in it."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import os
import threading
import time

import pytest

from serverless import work_folders
from serverless.handler import handler
from serverless.work_folders import ACTIVE_FILE, KEEP_S, held, sweep
from tests.moto_s3 import MotoS3
from tests.test_serverless import GOOD_CONFIG, worker_env  # noqa: F401 - a fixture

HOURS = 3600


def job_folder(parent, name: str, age_s: float, active_age_s: float | None = None):
    """A job folder with a checkpoint, everything in it last touched `age_s` ago."""
    folder = parent / name
    (folder / "job" / "checkpoints").mkdir(parents=True)
    (folder / "job" / "checkpoints" / "step-100.safetensors").write_bytes(b"x" * 1024)
    if active_age_s is not None:
        (folder / ACTIVE_FILE).touch()
    then = time.time() - age_s
    for top, dirs, files in os.walk(folder, topdown=False):
        for name_ in files + dirs:
            os.utime(os.path.join(top, name_), (then, then))
    os.utime(folder, (then, then))
    if active_age_s is not None:
        beat = time.time() - active_age_s
        os.utime(folder / ACTIVE_FILE, (beat, beat))
    return folder


def test_only_folders_unused_for_hours_go(tmp_path):
    parent = tmp_path / "serverless"
    job_folder(parent, "failed-yesterday", 26 * HOURS)
    job_folder(parent, "failed-just-now", 10 * 60)  # RunPod may still retry it
    job_folder(parent, "running-elsewhere", 30 * HOURS, active_age_s=30)  # another worker's long job
    job_folder(parent, "abandoned-mid-run", 30 * HOURS, active_age_s=29 * HOURS)  # its worker died
    job_folder(parent, "this-job", 40 * HOURS)
    removed = sweep(parent, "this-job")
    assert sorted(removed) == ["abandoned-mid-run", "failed-yesterday"]
    assert sorted(path.name for path in parent.iterdir()) == ["failed-just-now", "running-elsewhere", "this-job"]


def test_a_recent_checkpoint_keeps_an_old_folder(tmp_path):
    parent = tmp_path / "serverless"
    folder = job_folder(parent, "retried", 5 * HOURS)
    (folder / "job" / "checkpoints" / "step-200.safetensors").write_bytes(b"y")  # written by the retry
    assert sweep(parent, "other") == []
    assert folder.exists()


def test_a_worker_with_no_folder_yet_sweeps_nothing(tmp_path):
    assert sweep(tmp_path / "serverless", "first") == []


def test_a_folder_that_cannot_be_removed_is_left_and_the_rest_go(tmp_path, monkeypatch):
    parent = tmp_path / "serverless"
    job_folder(parent, "a-stuck", 3 * HOURS)
    job_folder(parent, "b-old", 3 * HOURS)
    real = work_folders.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if path.name == "a-stuck":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(work_folders.shutil, "rmtree", rmtree)
    assert sweep(parent, "now") == ["b-old"]
    assert (parent / "a-stuck").exists()


def test_a_held_folder_beats_while_its_job_runs_and_ages_once_it_ends(tmp_path):
    folder = tmp_path / "serverless" / "job-1"
    with held(folder, beat_s=0.05):
        marker = folder / ACTIVE_FILE
        os.utime(marker, (0, 0))
        deadline = time.monotonic() + 10
        while marker.stat().st_mtime == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert time.time() - marker.stat().st_mtime < 60  # the beat goes on
    assert folder.is_dir() and not marker.exists()


def test_a_job_that_removes_its_folder_is_not_given_it_back_by_the_beat(tmp_path):
    folder = tmp_path / "serverless" / "job-2"
    with held(folder, beat_s=0.01):
        import shutil

        shutil.rmtree(folder)
        time.sleep(0.1)  # several beats after the removal
    assert not folder.exists()
    assert not [thread for thread in threading.enumerate() if thread.name == "serverless-folder-beat"]


@pytest.fixture
def moto():
    server = MotoS3().start()
    yield server
    server.stop()


def test_each_job_sweeps_what_failed_jobs_left(worker_env, moto, studio_root):
    parent = studio_root / "serverless"
    job_folder(parent, "failed-long-ago", KEEP_S + HOURS)
    job_folder(parent, "failed-recently", 60)
    moto.make_bucket("sweep-out", {"sets/empty/readme.md": b"no images here"})
    for key, value in moto.env(S3_BUCKET="sweep-out").items():
        worker_env.setenv(key, value)
    result = handler({"id": "new-1", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/empty"}}})
    assert result["error"] == "The dataset holds no usable images.", result
    assert sorted(path.name for path in parent.iterdir()) == ["failed-recently", "new-1"]
    assert not (parent / "new-1" / ACTIVE_FILE).exists()  # the failed job's folder now ages
