"""A library file's card edits: its trigger word (kept beside the file, which stays byte for byte, and used by its card,
Try it and "Start from LoRA"), and its name (the file, its record, its copy in ComfyUI's loras and its renders move
together; a taken name or a render on its way refuse it, and nothing is lost). A training job's own LoRA is renamed
too: the job records the new name, and the README and workflow the pod serves name it."""

from __future__ import annotations

import numpy as np
import pytest

import trainer
from trainer import library_facts, renders
from trainer.lora_resize import encode


def _lora(meta: dict | None = None) -> bytes:
    prefix = "diffusion_model.layers.0.attention.to_q"
    return encode({f"{prefix}.lora_A.weight": np.ones((4, 16), np.float32),
                   f"{prefix}.lora_B.weight": np.ones((16, 4), np.float32)}, "F32", meta or {})


@pytest.fixture
def studio(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    space = app.config["STUDIO_WORKSPACE"]
    (space.root / "ComfyUI").mkdir()
    space.loras.mkdir(parents=True, exist_ok=True)
    return app


def _add(app, name: str, meta: dict | None = None):
    """A file in the library and (linked) in ComfyUI's loras, as an import leaves it."""
    from trainer.library import also_in_comfyui

    space = app.config["STUDIO_WORKSPACE"]
    (space.loras / name).write_bytes(_lora(meta))
    also_in_comfyui(space, space.loras / name)
    return space.loras / name


def _card(client, file: str) -> dict:
    return next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == file)


def test_a_trigger_word_set_on_the_card_wins_over_the_files_and_the_file_is_untouched(studio):
    client = studio.test_client()
    path = _add(studio, "found.safetensors", {"modelspec.trigger_phrase": "old words"})
    data = path.read_bytes()
    answer = client.patch("/api/library/files/found.safetensors", json={"trigger_word": " ohwx ,  zkw style "})
    assert answer.status_code == 200 and answer.get_json() == {"file": "found.safetensors",
                                                                 "trigger_word": "ohwx, zkw style"}
    assert path.read_bytes() == data  # its hash still finds it
    assert _card(client, "found.safetensors")["trigger_word"] == "ohwx, zkw style"
    listed = client.get("/api/library/files").get_json()["files"]
    assert listed[0]["trigger_word"] == "ohwx, zkw style"  # the new job form's "Start from LoRA"
    defaults = client.get("/api/library/files/found.safetensors/renders").get_json()["defaults"]
    assert defaults["trigger_word"] == "ohwx, zkw style"  # Try it's [trigger]
    back = client.patch("/api/library/files/found.safetensors", json={"trigger_word": ""})
    assert back.get_json()["trigger_word"] == "old words"  # the file's own again


def test_a_rename_moves_the_file_its_record_comfyuis_copy_and_its_renders(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    from trainer.jobs_api import store

    with studio.app_context():
        jobs = store()
    path = _add(studio, "lora_final_v3.safetensors")
    data = path.read_bytes()
    library_facts.write_source(path, {"url": "https://example.com/x.safetensors"})
    tried = jobs.create(renders.KIND, name="try", config={renders.LIBRARY_FILE: path.name})[0]
    queued = client.patch(f"/api/library/files/{path.name}", json={"name": "x"})
    assert queued.status_code == 409 and "being rendered" in queued.get_json()["error"]  # its render waits
    jobs.finish(tried.id, "completed")
    answer = client.patch(f"/api/library/files/{path.name}", json={"name": "Ink style!", "trigger_word": "inkz"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"file": "Ink-style.safetensors", "trigger_word": "inkz"}
    assert not path.exists() and (space.loras / "Ink-style.safetensors").read_bytes() == data
    assert not (space.comfyui_loras / path.name).exists()
    assert (space.comfyui_loras / "Ink-style.safetensors").read_bytes() == data
    card = _card(client, "Ink-style.safetensors")
    assert card["metadata"]["source_url"] == "https://example.com/x.safetensors" and card["trigger_word"] == "inkz"
    assert jobs.get(tried.id).config[renders.LIBRARY_FILE] == "Ink-style.safetensors"
    assert client.patch("/api/library/files/Ink-style.safetensors", json={"name": "ink-style"}).status_code == 200
    assert [p.name for p in space.loras.glob("*.safetensors")] == ["ink-style.safetensors"]  # case alone


def test_a_taken_name_a_jobs_own_lora_and_bad_requests_are_refused_and_nothing_moves(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    _add(studio, "one.safetensors")
    _add(studio, "Two.safetensors")
    (space.comfyui_loras / "theirs.safetensors").write_bytes(b"someone else's")  # ComfyUI's own file
    for wanted, where in (("two", "the library"), ("theirs", "ComfyUI's loras")):
        answer = client.patch("/api/library/files/one.safetensors", json={"name": wanted})
        assert answer.status_code == 409 and f"is in {where} already" in answer.get_json()["error"]
    assert sorted(p.name for p in space.loras.glob("*.safetensors")) == ["Two.safetensors", "one.safetensors"]
    for body, words in (({}, "Send the file's new"), ({"size": 3}, "Send the file's new"),
                        ({"name": " "}, "'name' must be"), ({"trigger_word": 3}, "'trigger_word' must be"),
                        ({"trigger_word": "a\nb"}, "on one line")):
        answer = client.patch("/api/library/files/one.safetensors", json=body)
        assert answer.status_code == 422 and words in answer.get_json()["error"], body
    assert client.patch("/api/library/files/none.safetensors", json={"name": "x"}).status_code == 404
    assert client.patch("/api/library/files/..%2f..%2fstudio.db", json={"name": "x"}).status_code in (400, 404)


def test_a_training_jobs_own_lora_is_renamed_and_its_readme_and_workflow_name_it(studio, demo_paths):
    import json

    from tests.test_trainer_renders import finished_job
    from trainer.jobs_api import store
    from trainer.library import publish

    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    with studio.app_context():
        jobs = store()
    job = finished_job(jobs, space.root, demo_paths)
    folder = space.jobs / job.id / "lora"
    publish(space, job, folder / "tiny-lora.safetensors")
    jobs.update(job.id, message="Finished 6 steps. Copied to trainer/loras/tiny-lora.safetensors.")  # as the worker
    (folder / "README.txt").write_text("Load tiny-lora.safetensors at strength 1.\n")  # as the engine writes them
    (folder / "comfyui_workflow.json").write_text(json.dumps({"3": {"class_type": "LoraLoaderModelOnly", "inputs": {
        "lora_name": "tiny-lora.safetensors", "strength_model": 1.0}}}))
    answer = client.patch("/api/library/files/tiny-lora.safetensors", json={"trigger_word": "x"})
    assert answer.status_code == 409 and "its trigger word is the job's" in answer.get_json()["error"]
    answer = client.patch("/api/library/files/tiny-lora.safetensors", json={"name": "Tiny Cat"})
    assert answer.status_code == 200 and answer.get_json()["file"] == "Tiny-Cat.safetensors"
    assert not (space.loras / "tiny-lora.safetensors").exists()
    assert (space.comfyui_loras / "Tiny-Cat.safetensors").is_file()
    assert jobs.get(job.id).result["library_file"] == "Tiny-Cat.safetensors"  # Train further replaces that file
    detail = client.get(f"/api/jobs/{job.id}").get_json()
    assert detail["lora"]["library_file"] == "Tiny-Cat.safetensors"  # the job page's name for it
    assert detail["job"]["message"] == "Finished 6 steps. Copied to trainer/loras/Tiny-Cat.safetensors."
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["job_id"] == job.id)
    assert card["library_file"] == "Tiny-Cat.safetensors" and card["in_comfyui"]  # Delete says it goes there too
    assert card["download_url"] == "/api/library/files/Tiny-Cat.safetensors"
    assert len(client.get("/api/library").get_json()["loras"]) == 1  # still the job's card, not a loose file
    graph = client.get(f"/api/jobs/{job.id}/files/lora/comfyui_workflow.json").get_json()
    assert graph["3"]["inputs"]["lora_name"] == "Tiny-Cat.safetensors"  # ComfyUI loads this job's LoRA
    readme = client.get(f"/api/jobs/{job.id}/files/lora/README.txt").get_data(as_text=True)
    assert readme == "Load Tiny-Cat.safetensors at strength 1.\n"
    assert "tiny-lora.safetensors" in (folder / "README.txt").read_text()  # the job's own files stay as written
    further = jobs.create("train", name="tiny, further", config={})[0]  # trained further: the job waits again
    jobs.update(further.id, result={"library_file": "Tiny-Cat.safetensors"})
    answer = client.patch("/api/library/files/Tiny-Cat.safetensors", json={"name": "other"})
    assert answer.status_code == 409 and "training further now" in answer.get_json()["error"]
    assert (space.loras / "Tiny-Cat.safetensors").is_file()


def test_a_lora_whose_job_trains_further_keeps_its_card_and_cannot_be_deleted_meanwhile(studio, demo_paths):
    from tests.test_trainer_renders import finished_job
    from trainer.jobs_api import store
    from trainer.library import publish

    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    with studio.app_context():
        jobs = store()
    job = finished_job(jobs, space.root, demo_paths)
    publish(space, job, space.jobs / job.id / "lora" / "tiny-lora.safetensors")
    jobs.resume(job.id, "Waiting for the worker: 100 more steps.", also_completed=True)  # Train more steps
    (card,) = client.get("/api/library").get_json()["loras"]  # still the job's card, not a loose file
    assert card["job_id"] == job.id and card["training_further"] == "queued"
    answer = client.delete("/api/library/files/tiny-lora.safetensors")
    assert answer.status_code == 409 and "training further now" in answer.get_json()["error"]
    assert (space.loras / "tiny-lora.safetensors").is_file()
    jobs.claim("train", "1:1")
    jobs.finish(job.id, "completed")  # done: the card is a finished job's again, and Delete works
    (card,) = client.get("/api/library").get_json()["loras"]
    assert "training_further" not in card
    assert client.delete("/api/library/files/tiny-lora.safetensors").status_code == 200


def test_a_name_with_no_letter_or_digit_is_refused_not_turned_into_lora(studio):
    client = studio.test_client()
    path = _add(studio, "ink.safetensors")
    answer = client.patch(f"/api/library/files/{path.name}", json={"name": "!!!"})
    assert answer.status_code == 422 and "has no letter or digit" in answer.get_json()["error"]
    assert path.is_file() and not (path.parent / "lora.safetensors").exists()
