"""A completed job trained further (Train more steps) keeps the LoRA it finished with until the longer run replaces
it. The job page showed a LoRA only for a completed job: while the job trained further, and after that run was
stopped or its process killed, the page offered no download at all, as if the finished LoRA were lost. It is shown,
with the step it is of."""

from __future__ import annotations

from tests.test_trainer_worker import TINY_CONFIG, make_export


def _finished_job(client, app):
    root = app.config["STUDIO_SETTINGS"].root
    dataset = make_export(root).name
    body = {"name": "trained further", "recipe": "zimage-turbo", "dataset": dataset, "config": TINY_CONFIG}
    job_id = client.post("/api/jobs", json=body).get_json()["job"]["id"]
    store = app.extensions["job_store"]
    lora = app.config["STUDIO_WORKSPACE"].jobs / job_id / "lora" / "tiny-lora.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"finished at step 6")
    store.finish(job_id, "completed", message="Finished 6 steps.", lora_path=str(lora),
                 result={"lora_path": str(lora), "steps": 6, "library_file": "tiny-lora.safetensors"})
    return store, job_id


def test_the_finished_lora_stays_on_the_page_while_and_after_it_trains_further(trainer_client, trainer_app):
    store, job_id = _finished_job(trainer_client, trainer_app)
    done = trainer_client.get(f"/api/jobs/{job_id}").get_json()["lora"]
    assert done["path"] == "lora/tiny-lora.safetensors" and done["earlier_step"] is None

    store.resume(job_id, "6 more steps", also_completed=True)  # Train more steps: queued
    waiting = trainer_client.get(f"/api/jobs/{job_id}").get_json()
    assert waiting["job"]["status"] == "queued"
    assert waiting["lora"]["path"] == "lora/tiny-lora.safetensors" and waiting["lora"]["earlier_step"] == 6

    store.finish(job_id, "failed", error="The training process was killed (SIGKILL).")  # the longer run died
    failed = trainer_client.get(f"/api/jobs/{job_id}").get_json()
    assert failed["lora"]["earlier_step"] == 6 and failed["lora"]["library_file"] == "tiny-lora.safetensors"
    download = trainer_client.get(f"/api/jobs/{job_id}/files/{failed['lora']['path']}")
    assert download.status_code == 200 and download.data == b"finished at step 6"


def test_a_job_that_never_finished_shows_no_lora(trainer_client, trainer_app):
    root = trainer_app.config["STUDIO_SETTINGS"].root
    body = {"name": "cut short", "recipe": "zimage-turbo", "dataset": make_export(root).name, "config": TINY_CONFIG}
    job_id = trainer_client.post("/api/jobs", json=body).get_json()["job"]["id"]
    stray = trainer_app.config["STUDIO_WORKSPACE"].jobs / job_id / "lora" / "tiny-lora.safetensors"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half written")
    trainer_app.extensions["job_store"].finish(job_id, "failed", error="killed")
    assert trainer_client.get(f"/api/jobs/{job_id}").get_json()["lora"] is None


def test_the_library_keeps_the_card_of_a_job_whose_longer_run_failed(trainer_client, trainer_app):
    """The library listed a job's LoRA only while the job was completed or training: once Train more steps failed,
    its card lost the job (no steps, no Open job, no Train further), as if it were a loose file."""
    store, job_id = _finished_job(trainer_client, trainer_app)
    store.resume(job_id, "6 more steps", also_completed=True)
    store.start(job_id, "someone")
    store.progress(job_id, {"step": 9})
    store.finish(job_id, "failed", error="The training process was killed (SIGKILL).")
    cards = [card for card in trainer_client.get("/api/library").get_json()["loras"] if card.get("job_id") == job_id]
    assert len(cards) == 1 and cards[0]["steps"] == 6 and cards[0]["path"] == "lora/tiny-lora.safetensors"
