"""A completed LoRA can be trained for more steps: the same job goes on from its final checkpoint."""

from __future__ import annotations

import trainer
from tests.test_trainer_worker import _job, _worker
from trainer.library_facts import safetensors_metadata


def job_lora_name(job) -> str:
    return f"{job.config.get('name', 'fake')}.safetensors"


def test_continue_a_completed_job_for_more_steps(settings):
    worker = _worker(settings)
    job = _job(worker.store, steps=4, save_every=2)
    assert worker.run_once().status == "completed"
    client = trainer.create_app(settings).test_client()
    assert client.post(f"/api/jobs/{job.id}/continue", json={"more_steps": 0}).status_code == 422
    assert client.post(f"/api/jobs/{job.id}/continue", json={}).status_code == 422
    response = client.post(f"/api/jobs/{job.id}/continue", json={"more_steps": 3})
    assert response.status_code == 200, response.get_json()
    queued = response.get_json()["job"]
    assert queued["status"] == "queued" and queued["total_steps"] == 7 and queued["config"]["steps"] == 7
    assert "3 more steps, from step 4 to 7" in queued["message"]
    assert client.post(f"/api/jobs/{job.id}/continue", json={"more_steps": 3}).status_code == 409  # not completed
    done = worker.run_once()
    assert done.id == job.id and done.status == "completed" and done.step == 7
    # the library holds the longer-trained LoRA under the same name: no orphan of the first finish
    (library_file,) = worker.workspace.loras.iterdir()
    assert library_file.name == done.result["library_file"] == job_lora_name(done)
    assert safetensors_metadata(library_file)["steps"] == "7"
    log = (worker.workspace.jobs / job.id / "log.txt").read_text()
    assert "fake: starting at step 4" in log


def test_more_steps_after_an_early_stop_are_trained_whole(settings):
    worker = _worker(settings)
    job = _job(worker.store, steps=6, mode="early", stop_when_overfitting=True, holdout_images=1)
    assert worker.run_once().step == 2
    worker.store.update(job.id, config={k: v for k, v in job.config.items() if k != "mode"})  # the stand-in's own
    response = trainer.create_app(settings).test_client().post(f"/api/jobs/{job.id}/continue",
                                                               json={"more_steps": 4})
    assert response.status_code == 200, response.get_json()
    queued = response.get_json()["job"]
    assert response.status_code == 200 and queued["total_steps"] == 6
    assert queued["config"]["stop_when_overfitting"] is False and queued["config"]["holdout_images"] == 1
    assert queued["message"].endswith("from step 2 to 6. Stop when overfitting is off for them.")


def test_continue_needs_the_final_checkpoint(settings):
    worker = _worker(settings)
    job = _job(worker.store, steps=3, save_every=2)  # the last checkpoint is at step 2, not 3
    assert worker.run_once().status == "completed"
    response = trainer.create_app(settings).test_client().post(f"/api/jobs/{job.id}/continue",
                                                               json={"more_steps": 5})
    assert response.status_code == 409 and "no checkpoint at its last step (3)" in response.get_json()["error"]


def test_a_continued_job_never_takes_the_library_name_another_job_holds_now(settings):
    worker = _worker(settings)
    first = _job(worker.store, steps=4, save_every=2)
    assert worker.run_once().result["library_file"] == "fake.safetensors"
    client = trainer.create_app(settings).test_client()
    assert client.delete("/api/library/files/fake.safetensors").status_code == 200  # the file, not the job
    _job(worker.store, steps=2, save_every=2)  # another job with the same LoRA name
    assert worker.run_once().result["library_file"] == "fake.safetensors"  # the name was free again
    assert client.post(f"/api/jobs/{first.id}/continue", json={"more_steps": 2}).status_code == 200
    done = worker.run_once()
    assert done.id == first.id and done.result["library_file"] == f"fake-{first.id}.safetensors"
    assert safetensors_metadata(worker.workspace.loras / "fake.safetensors")["steps"] == "2"  # still the second's
