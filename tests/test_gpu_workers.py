"""A pod with several GPUs trains one job per GPU at once: a worker per GPU (studio.gpus), each written as a
supervisord program at start, each job seeing only its worker's GPU; the queue's times count the workers side by
side, and each job pays its GPU's part of the pod's price. (The supervisord run itself: test_e2e_supervisord.)"""

from __future__ import annotations

import os
import sys
import threading

import pytest

from studio import supervisor_env
from studio.gpus import visible_gpus, worker_gpus, workers_for
from studio.upgrade import open_job_store
from studio.workspace import Workspace
from tests.test_trainer_worker import _job, _worker
from trainer import schedule as schedule_module
from trainer.worker import main as worker_main


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """nvidia-smi on PATH listing `count` GPUs (as `nvidia-smi -L` does)."""

    def install(count: int):
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        lines = "".join(f"echo 'GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d})'\n" for i in range(count))
        script = folder / "nvidia-smi"
        script.write_text(f"#!/bin/sh\n{lines}")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    return install


def test_one_worker_per_gpu_unless_capped(fake_nvidia_smi):
    fake_nvidia_smi(4)
    assert visible_gpus({}) == ["0", "1", "2", "3"]
    assert worker_gpus(0, ["0", "1", "2", "3"]) == ["0", "1", "2", "3"]
    assert worker_gpus(2, ["0", "1", "2", "3"]) == ["0", "1"]  # GPU_WORKERS caps it
    assert worker_gpus(1, ["0", "1"]) == ["0"]  # one job at a time, on the first GPU
    assert worker_gpus(8, ["0", "1"]) == ["0", "1"]  # never two jobs on one GPU
    # one GPU: its jobs see the machine as it is; no GPU: the CPU, shared by GPU_WORKERS workers (demo, tests)
    assert worker_gpus(3, ["0"]) == [None] and worker_gpus(0, []) == [None] and worker_gpus(2, []) == [None, None]
    # the machine's own CUDA_VISIBLE_DEVICES names the GPUs the studio may use
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == [] and visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_no_nvidia_smi_means_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == []


def test_supervisord_gets_a_worker_program_for_each_gpu_past_the_first(fake_nvidia_smi, tmp_path):
    fake_nvidia_smi(3)
    env = {"STUDIO_ROOT": str(tmp_path / "root"), "STUDIO_RUN_DIR": str(tmp_path / "run"), "PATH": os.environ["PATH"]}
    prepared = supervisor_env.prepare(env, python="/venv/bin/python")
    conf_d = tmp_path / "run" / "conf.d"
    assert sorted(p.name for p in conf_d.glob("worker-*.conf")) == ["worker-2.conf", "worker-3.conf"]
    text = (conf_d / "worker-3.conf").read_text()
    assert "[program:worker-3]" in text and "command=/venv/bin/python -m trainer.worker --slot 3" in text
    assert f"stdout_logfile={tmp_path / 'root' / 'logs'}/worker-3.log" in text and "autorestart=unexpected" in text
    assert prepared["STUDIO_PYTHON"] == "/venv/bin/python"
    # capped to one: the programs written before are taken away
    supervisor_env.prepare({**env, "GPU_WORKERS": "1"}, python="/venv/bin/python")
    assert not list(conf_d.glob("worker-*.conf"))


def test_each_workers_jobs_see_only_its_gpu_and_two_train_at_once(make_settings, tmp_path):
    settings = make_settings()
    seen = tmp_path / "seen"
    seen.mkdir()

    def command(job_id: str) -> list[str]:  # the fake training child, noting the GPU it was given
        note = ("import os, sys; open(sys.argv[2], 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', 'none')); "
                "from tests.test_trainer_worker import _fake_main; sys.exit(_fake_main(sys.argv[1]))")
        return [sys.executable, "-c", note, job_id, str(seen / job_id)]

    workers = [_worker(settings, child_command=command, gpu=gpu) for gpu in ("0", "1")]
    store = workers[0].store
    jobs = [_job(store, steps=8, delay=0.25), _job(store, steps=8, delay=0.25)]
    threads = [threading.Thread(target=worker.run_once) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done = [store.get(job.id) for job in jobs]
    assert [job.status for job in done] == ["completed", "completed"]
    assert sorted((seen / job.id).read_text() for job in jobs) == ["0", "1"]  # one job per GPU
    assert sorted(job.details["gpu"] for job in done) == ["0", "1"]  # what the job page names
    first, second = done
    assert first.started_at < second.finished_at and second.started_at < first.finished_at  # side by side
    # one GPU or none: the job sees the machine as it is
    assert "CUDA_VISIBLE_DEVICES" not in {k for k in _worker(settings).child_env(jobs[0]) if k not in os.environ}


def test_a_worker_past_the_machines_count_is_not_needed(fake_nvidia_smi, monkeypatch, tmp_path):
    fake_nvidia_smi(2)
    monkeypatch.setenv("STUDIO_ROOT", str(tmp_path / "root"))
    assert worker_main(["--slot", "3"]) == 0  # exits at once, and supervisord leaves it stopped


def test_the_queue_times_count_the_workers_side_by_side(make_settings, monkeypatch):
    settings = make_settings()
    store = open_job_store(Workspace(settings.root).ensure())
    jobs = [_job(store, steps=10) for _ in range(3)]
    monkeypatch.setattr(schedule_module, "job_seconds", lambda _settings, _job: 100.0)
    one = schedule_module.schedule(settings, [], jobs, workers=1)
    assert [one[j.id]["done_in_s"] for j in jobs] == [100, 200, 300]
    two = schedule_module.schedule(settings, [], jobs, workers=2)
    assert [(two[j.id]["starts_in_s"], two[j.id]["done_in_s"]) for j in jobs] == [(0, 100), (0, 100), (100, 200)]


def test_each_job_pays_its_gpus_part_of_the_pods_price(make_settings):
    import trainer

    app = trainer.create_app(make_settings(STUDIO_DEMO=1, GPU_PRICE_PER_HOUR=6.0))
    client, store = app.test_client(), app.extensions["job_store"]
    assert client.get("/api/jobs").get_json()["price"] == {"per_hour": 6.0, "source": "setting"}
    store.worker_beat(os.getpid(), "idle")
    store.worker_beat(os.getppid(), "idle")  # a second live process: a second worker
    assert client.get("/api/jobs").get_json()["price"] == {"per_hour": 6.0, "source": "setting", "jobs_at_once": 2}


def test_settings_read_gpu_workers(make_settings):
    assert make_settings().gpu_workers == 0 and make_settings(GPU_WORKERS=2).gpu_workers == 2
    assert workers_for(make_settings(GPU_WORKERS=2), {"CUDA_VISIBLE_DEVICES": "5,6,7"}) == ["5", "6"]
