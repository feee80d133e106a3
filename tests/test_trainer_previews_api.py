"""The API side of the base-vs-LoRA previews and the proof files: /api/jobs/<id>/samples pairs,
GET /api/jobs/<id> proof, the library card; older jobs' sample folders still show."""

from __future__ import annotations

import json
import shutil

from tests import test_trainer_api
from tests.test_trainer_worker import TINY_CONFIG, _fake_safetensors, make_export

PNG = b"\x89PNG fake"
app, client = test_trainer_api.app, test_trainer_api.client  # the demo trainer app and its test client


def _job(client, app):
    dataset = make_export(app.config["STUDIO_SETTINGS"].root).name
    body = {"name": "proof job", "recipe": "zimage-turbo", "dataset": dataset, "config": dict(TINY_CONFIG)}
    job_id = client.post("/api/jobs", json=body).get_json()["job"]["id"]
    return job_id, app.config["STUDIO_WORKSPACE"].jobs / job_id


def _write_samples(job_dir):
    base = job_dir / "samples" / "base"
    base.mkdir(parents=True)
    for i in (0, 1):
        (base / f"{i}.png").write_bytes(PNG + b" base")
    (base / "prompts.json").write_text(json.dumps({"prompts": [
        {"index": 0, "prompt": "zkw a cat", "seed": 42, "key": "k0", "file": "0.png"},
        {"index": 1, "prompt": "a dog", "seed": 43, "key": "k1", "file": "1.png"}]}))
    old = job_dir / "samples" / "step_000002"  # written before previews came in triples
    old.mkdir()
    (old / "0.png").write_bytes(PNG)
    (old / "prompts.json").write_text(json.dumps(["zkw a cat"]))
    new = job_dir / "samples" / "step_000004"
    new.mkdir()
    for name in ("0.png", "0_notrigger.png", "1.png"):
        (new / name).write_bytes(PNG + name.encode())
    (new / "prompts.json").write_text(json.dumps({"step": 4, "prompts": [
        {"index": 0, "prompt": "zkw a cat", "seed": 42, "no_trigger_prompt": "a cat", "lora": "0.png",
         "lora_no_trigger": "0_notrigger.png", "base": "../base/0.png", "base_key": "k0", "leak": 0.25},
        {"index": 1, "prompt": "a dog", "seed": 7, "no_trigger_prompt": None, "lora": "1.png",
         "lora_no_trigger": None, "base": "../base/1.png", "base_key": "stale",
         "options": {"width": 832, "height": 1216, "seed": 7}}]}))


def test_samples_route_pairs_base_lora_and_no_trigger(client, app):
    job_id, job_dir = _job(client, app)
    _write_samples(job_dir)
    answer = client.get(f"/api/jobs/{job_id}/samples").get_json()
    before, old, new = answer["samples"]
    assert answer["leak"] == {"share": 0.25, "step": 4, "leaks": False}  # the latest preview step's, for the pages

    # the base model's renders, made before the first step, come first as step 0
    files = f"/api/jobs/{job_id}/files/samples"
    assert before["step"] == 0 and before["base_only"] and before["prompts"] == ["zkw a cat", "a dog"]
    assert before["urls"] == [f"{files}/base/0.png", f"{files}/base/1.png"]
    assert [(p["base"], p["lora"]) for p in before["pairs"]] == [(f"{files}/base/0.png", None),
                                                                 (f"{files}/base/1.png", None)]

    assert old["step"] == 2 and old["prompts"] == ["zkw a cat"] and len(old["urls"]) == 1
    assert old["pairs"] == [{"index": 0, "prompt": "zkw a cat", "seed": None, "no_trigger_prompt": None,
                             "base": None, "base_key": None, "lora": old["urls"][0], "lora_no_trigger": None,
                             "leak": None,
                             "leaks": False, "options": None}]

    assert new["images"] == ["samples/step_000004/0.png", "samples/step_000004/1.png"]  # LoRA-on images only
    first, second = new["pairs"]
    assert first == {"index": 0, "prompt": "zkw a cat", "seed": 42, "no_trigger_prompt": "a cat",
                     "base": f"{files}/base/0.png", "base_key": "k0", "lora": f"{files}/step_000004/0.png",
                     "lora_no_trigger": f"{files}/step_000004/0_notrigger.png", "leak": 0.25, "leaks": False,
                     "options": None}
    # no trigger word in the prompt: no third column; a base made for other settings is not shown
    assert second["lora_no_trigger"] is None and second["base"] is None
    # a prompt with its own size and seed (--w 832 --h 1216 --d 7) says so, for the page to show
    assert second["options"] == {"width": 832, "height": 1216, "seed": 7}
    for url in (first["base"], first["lora"], first["lora_no_trigger"]):
        response = client.get(url)
        assert response.status_code == 200 and response.data.startswith(PNG)


def test_finished_job_exposes_the_proof_files_and_the_library_shows_the_pairs(client, app):
    job_id, job_dir = _job(client, app)
    _write_samples(job_dir)
    store = app.extensions["job_store"]
    store.claim("train", "1:x")
    lora = job_dir / "lora" / "proof-lora.safetensors"
    _fake_safetensors(lora)
    (job_dir / "lora" / "proof_grid.png").write_bytes(PNG + b" grid")
    (job_dir / "lora" / "README.txt").write_text("proof-lora: a LoRA for Tongyi-MAI/Z-Image-Turbo\n")
    store.finish(job_id, "completed", message="done", lora_path=str(lora))

    detail = client.get(f"/api/jobs/{job_id}").get_json()
    assert detail["proof"] == {"grid": "lora/proof_grid.png", "readme": "lora/README.txt", "workflow": None}
    readme = client.get(f"/api/jobs/{job_id}/files/{detail['proof']['readme']}")
    assert readme.status_code == 200 and b"Z-Image-Turbo" in readme.data
    assert client.get(f"/api/jobs/{job_id}/files/{detail['proof']['grid']}").data == PNG + b" grid"

    (card,) = [e for e in client.get("/api/library").get_json()["loras"] if e["job_id"] == job_id]
    assert card["proof"]["grid"] == f"/api/jobs/{job_id}/files/lora/proof_grid.png"
    assert card["samples"]["step"] == 4
    assert card["samples"]["pairs"][0]["base"] == f"/api/jobs/{job_id}/files/samples/base/0.png"
    assert card["samples"]["pairs"][0]["lora_no_trigger"].endswith("/step_000004/0_notrigger.png")
    assert card["leak"] == {"share": 0.25, "step": 4, "leaks": False}  # its final previews without the trigger word

    # every preview step skipped (out of memory): the card shows no pairs rather than the base alone
    for step in ("step_000002", "step_000004"):
        shutil.rmtree(job_dir / "samples" / step)
    (card,) = [e for e in client.get("/api/library").get_json()["loras"] if e["job_id"] == job_id]
    assert card["samples"] is None


def test_unfinished_job_has_no_proof(client, app):
    job_id, job_dir = _job(client, app)
    (job_dir / "lora").mkdir(parents=True)
    (job_dir / "lora" / "README.txt").write_text("left over")
    assert client.get(f"/api/jobs/{job_id}").get_json()["proof"] is None
