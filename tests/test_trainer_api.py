"""The trainer's JSON API: validation (400/422 with field details), de-duplication, job control, files, SSE."""

from __future__ import annotations

import io
import json
import os
import time

import pytest

import trainer
from studio.processes import process_token
from tests.test_trainer_worker import TINY_CONFIG, make_export


@pytest.fixture
def app(trainer_app):
    return trainer_app


@pytest.fixture
def client(trainer_client):
    return trainer_client


@pytest.fixture
def store(app):
    return app.extensions["job_store"]


@pytest.fixture
def dataset(app):
    return make_export(app.config["STUDIO_SETTINGS"].root).name


def _body(dataset, **config):
    return {"name": "my job", "recipe": "zimage-turbo", "dataset": dataset, "config": {**TINY_CONFIG, **config}}


def test_recipes_and_schema(client):
    recipes = client.get("/api/recipes").get_json()
    recipe = recipes["recipes"][0]
    assert recipes["default"] == "zimage-turbo"
    assert {"16gb", "24gb", "48gb"} <= set(recipe["presets"])
    assert {f["section"] for f in recipe["fields"]} == {"basic", "advanced"}
    schema = client.get("/api/recipes/zimage-turbo/schema").get_json()
    assert schema["type"] == "object" and "steps" in schema["properties"]
    assert client.get("/api/recipes/nope/schema").status_code == 404


def test_validate_a_good_job(client, dataset):
    response = client.post("/api/jobs/validate", json=_body(dataset))
    report = response.get_json()
    assert response.status_code == 200 and report["ok"] and report["errors"] == []
    assert report["images"] == 4 and report["estimated_duration_s"] > 0 and report["estimated_memory_gb"] > 0
    assert report["config"]["steps"] == 6


def test_every_mistake_is_said_at_once(client, dataset):
    bad = client.post("/api/jobs/validate", json=_body(dataset, steps=-5, learning_rate="abc", rank=0, batch_size=0))
    assert bad.status_code == 422
    assert {e["field"] for e in bad.get_json()["errors"]} == {"steps", "learning_rate", "rank", "batch_size"}


def test_a_job_without_the_trigger_word_its_dataset_was_exported_with_is_warned(client, dataset):
    report = client.post("/api/jobs/validate", json=_body(dataset, trigger_word="")).get_json()
    assert report["ok"] and [w["message"] for w in report["warnings"] if w["field"] == "trigger_word"] == [
        "tiny-set was exported with the trigger word tok, and this job has none: its captions still hold tok, but the "
        "previews leave [trigger] out and the LoRA's file and README name no trigger word. Set the trigger word to "
        "tok, unless you mean that."]
    body = _body(dataset)
    del body["config"]["trigger_word"]  # a config sent without one: the same
    warned = client.post("/api/jobs/validate", json=body).get_json()["warnings"]
    assert any(w["field"] == "trigger_word" for w in warned)
    assert not any(w["field"] == "trigger_word"
                   for w in client.post("/api/jobs/validate", json=_body(dataset)).get_json()["warnings"])


def test_captions_longer_than_the_text_encoder_reads_are_named(client, dataset, app):
    from studio.text import estimated_tokens, over_caption_limit

    folder = trainer_export_dir(app, dataset)
    long = "tok, " + "a very long caption about a red door, " * 60  # about 540 tokens
    (folder / "img1.txt").write_text(long)
    (folder / "img2.txt").write_text("tok, " + "a red door " * 100)  # 300 words but fewer tokens: fine
    report = client.post("/api/jobs/validate", json=_body(dataset)).get_json()
    messages = [w["message"] for w in report["warnings"] if "text encoder" in w["message"]]
    assert messages == [f"1 caption is longer than the text encoder reads (about 512 tokens: img1.txt "
                        f"~{estimated_tokens(long)}); the end of each is cut off. Shorten them in the dataset "
                        "manager (its counter shows the tokens)."]
    assert report["ok"]  # a warning: it trains anyway
    assert over_caption_limit("a b c") is None and estimated_tokens("a red door, 3.5") == 9  # as the gallery counts
    assert estimated_tokens("猫が好き") == 5  # every sign outside ASCII words counts, as in the gallery


def test_a_bare_line_break_is_no_caption(client, dataset, app):
    folder = trainer_export_dir(app, dataset)
    (folder / "img1.txt").write_text("\n")  # what an export writes for an image without a caption
    (folder / "img2.txt").write_text(" \r\n")
    report = client.post("/api/jobs/validate", json=_body(dataset)).get_json()
    assert any(w["message"].startswith("2 images have no caption (img1.png, img2.png)") for w in report["warnings"])
    (listed,) = [d for d in client.get("/api/datasets").get_json()["datasets"] if d["name"] == dataset]
    assert (listed["images"], listed["captioned"]) == (4, 2)


def trainer_export_dir(app, name):
    from studio.workspace import Workspace

    return Workspace(app.config["STUDIO_SETTINGS"].root).export_dir(name)


def test_malformed_json_is_400(client):
    response = client.post("/api/jobs/validate", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]
    assert client.post("/api/jobs", data="[1, 2]", content_type="application/json").status_code == 400


def test_a_webhooks_token_is_never_shown_and_a_copy_keeps_the_webhook(client, store, dataset):
    hook = "https://discord.com/api/webhooks/123/TOKEN-xyz"
    job = client.post("/api/jobs", json={**_body(dataset), "webhook_url": hook}).get_json()["job"]
    assert job["webhook_url"] == "https://discord.com/…" and job["webhook_set"] is True
    for listing in (client.get("/api/jobs").get_json(), client.get(f"/api/jobs/{job['id']}").get_json()):
        assert "TOKEN-xyz" not in str(listing)
    # the page's "Copy" sends the job it copies rather than the address it was never shown
    copy = client.post("/api/jobs", json={**_body(dataset, seed=9), "name": "copy", "webhook_from": job["id"]})
    assert copy.status_code == 201, copy.get_json()
    assert store.get(copy.get_json()["job"]["id"]).webhook_url == hook
    plain = client.post("/api/jobs", json={**_body(dataset, seed=10), "name": "plain"}).get_json()["job"]
    assert plain["webhook_url"] is None and "webhook_set" not in plain
    refused = client.post("/api/jobs/validate", json={**_body(dataset), "webhook_from": 5}).get_json()
    assert [e["field"] for e in refused["errors"]] == ["webhook_from"]


def test_invalid_content_is_422_with_field_details(client, dataset):
    body = _body(dataset, steps=0, resolutions=[100], bogus=1)
    body["webhook_url"] = "ftp://example.com"
    response = client.post("/api/jobs/validate", json=body)
    assert response.status_code == 422
    report = response.get_json()
    fields = {e["field"]: e["message"] for e in report["errors"]}
    assert set(fields) >= {"steps", "bogus", "webhook_url"}
    assert "at least 1" in fields["steps"] and not report["ok"]
    assert report["details"] == report["errors"] and report["error"]
    created = client.post("/api/jobs", json=body)
    assert created.status_code == 422 and created.get_json()["details"]
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_held_out_images_must_leave_images_to_train_on(client, dataset):
    def messages(report, kind):
        return {e["field"]: e["message"] for e in report[kind]}

    every = client.post("/api/jobs/validate", json=_body(dataset, holdout_images=4))
    assert every.status_code == 422
    assert "keep at least one to train on" in messages(every.get_json(), "errors")["holdout_images"]
    many = client.post("/api/jobs/validate", json=_body(dataset, holdout_images=2)).get_json()
    assert many["ok"] and "2 images of 4 are held out" in messages(many, "warnings")["holdout_images"]
    one = client.post("/api/jobs/validate", json=_body(dataset, holdout_images=1)).get_json()
    assert one["ok"] and "holdout_images" not in messages(one, "warnings")
    blind = client.post("/api/jobs/validate", json=_body(dataset, stop_when_overfitting=True))
    assert blind.status_code == 422 and "set holdout_images" in messages(blind.get_json(), "errors")[
        "stop_when_overfitting"]
    assert client.post("/api/jobs/validate", json=_body(dataset, stop_when_overfitting=True,
                                                        holdout_images=1)).get_json()["ok"]
    # measuring costs time, and the estimate counts it
    quiet = client.post("/api/jobs/validate", json=_body(dataset, eval_every=0)).get_json()
    measured = client.post("/api/jobs/validate", json=_body(dataset, eval_every=1)).get_json()
    assert measured["estimated_duration_s"] > quiet["estimated_duration_s"]


def test_dataset_problems(client, app, dataset):
    root = app.config["STUDIO_SETTINGS"].root
    missing = client.post("/api/jobs/validate", json=_body("no-such-set")).get_json()
    assert missing["errors"][0]["field"] == "dataset" and "export" in missing["errors"][0]["message"]
    assert client.post("/api/jobs/validate", json=_body("../etc")).status_code == 422
    folder = root / "trainer" / "datasets" / dataset
    (folder / "img0.txt").unlink()
    (folder / "broken.png").write_bytes(b"not a png")
    report = client.post("/api/jobs/validate", json=_body(dataset)).get_json()
    warnings = " ".join(w["message"] for w in report["warnings"])
    assert report["ok"] and "no caption" in warnings and "cannot be read" in warnings
    strict = client.post("/api/jobs/validate", json=_body(dataset, missing_captions="error"))
    assert strict.status_code == 422


def test_missing_models_are_an_error_outside_demo_mode(make_settings):
    app = trainer.create_app(make_settings())
    name = make_export(app.config["STUDIO_SETTINGS"].root).name
    report = app.test_client().post("/api/jobs/validate", json=_body(name)).get_json()
    assert any(e["field"] == "model" and "models.txt" in e["message"] for e in report["errors"])



def test_missing_model_still_downloading_says_how_far(make_settings):
    from studio.atomic import atomic_write_json
    from studio.workspace import Workspace

    app = trainer.create_app(make_settings())
    root = app.config["STUDIO_SETTINGS"].root
    name = make_export(root).name
    atomic_write_json(Workspace(root).model_status_file, {"models": [
        {"key": "zimage", "name": "Z-Image-Turbo", "state": "downloading", "percent": 63.0, "eta_s": 180},
        {"key": "adapter", "name": "adapter", "state": "ready", "percent": 100.0},
    ]})
    report = app.test_client().post("/api/jobs/validate", json=_body(name)).get_json()
    waits = [w["message"] for w in report["warnings"] if w["field"] == "model"]  # queued, it waits for it
    assert any("downloading, 63%" in m and "waits in the queue" in m for m in waits), waits
    errors = [e["message"] for e in report["errors"] if e["field"] == "model"]  # "ready", yet not on disk
    assert errors and "training adapter is not on disk yet" in errors[0]


def test_double_submit_creates_one_job(client, dataset):
    first = client.post("/api/jobs", json=_body(dataset))
    second = client.post("/api/jobs", json=_body(dataset))
    assert first.status_code == 201 and second.status_code == 200
    assert first.get_json()["job"]["id"] == second.get_json()["job"]["id"]
    keyed = [client.post("/api/jobs", json=_body(dataset, steps=7), headers={"Idempotency-Key": "abc"})
             for _ in range(2)]
    assert [r.status_code for r in keyed] == [201, 200]
    assert len(client.get("/api/jobs").get_json()["jobs"]) == 2


def test_stop_resume_and_conflicts(client, store, dataset):
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    assert client.post(f"/api/jobs/{job_id}/sample").status_code == 409  # only while running
    stopped = client.post(f"/api/jobs/{job_id}/stop").get_json()["job"]
    assert stopped["status"] == "stopped" and stopped["message"] == "Stopped before it started."  # the toast says it
    assert client.post(f"/api/jobs/{job_id}/stop").status_code == 409
    resumed = client.post(f"/api/jobs/{job_id}/resume").get_json()["job"]
    assert resumed["status"] == "queued"
    assert resumed["message"] == "Queued again. It starts again from the beginning (no checkpoint was saved yet)."
    assert client.post(f"/api/jobs/{job_id}/resume").status_code == 409
    store.claim("train", "1:x")
    store.finish(job_id, "completed", message="done")
    response = client.post(f"/api/jobs/{job_id}/stop")
    assert response.status_code == 409 and "already completed" in response.get_json()["error"]
    assert client.post("/api/jobs/nope/stop").status_code == 404


def test_running_job_control_and_delete(client, app, store, dataset):
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    store.claim("train", process_token())
    control = app.config["STUDIO_WORKSPACE"].jobs / job_id / "control"
    assert client.post(f"/api/jobs/{job_id}/save").status_code == 202 and (control / "save").exists()
    assert client.post(f"/api/jobs/{job_id}/sample").status_code == 202 and (control / "sample").exists()
    response = client.delete(f"/api/jobs/{job_id}")
    assert response.status_code == 202 and response.get_json()["stopping"]
    assert store.get(job_id).control == "delete" and store.get(job_id).stopping  # the worker relays it
    queued = client.post("/api/jobs", json=_body(dataset, steps=9)).get_json()["job"]["id"]
    assert client.delete(f"/api/jobs/{queued}").get_json()["deleted"]
    assert client.get(f"/api/jobs/{queued}").status_code == 404


def test_clone(client, dataset):
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    response = client.post(f"/api/jobs/{job_id}/clone", json={"config": {"steps": 8}})
    clone = response.get_json()["job"]
    assert response.status_code == 201 and clone["id"] != job_id and clone["config"]["steps"] == 8
    assert clone["name"] == "my job (copy)"


def test_log_metrics_samples_and_files(client, app, dataset):
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    job_dir = app.config["STUDIO_WORKSPACE"].jobs / job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "log.txt").write_text("line one\nline two\n")
    first = client.get(f"/api/jobs/{job_id}/log?offset=0").get_json()
    assert first["text"] == "line one\nline two\n" and first["offset"] == 18
    with open(job_dir / "log.txt", "a") as handle:
        handle.write("line three\n")
    assert client.get(f"/api/jobs/{job_id}/log?offset=18").get_json()["text"] == "line three\n"
    assert client.get(f"/api/jobs/{job_id}/log?offset=x").status_code == 400
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 2, 3))
                                           + '{"step": 4, "lo')
    points = client.get(f"/api/jobs/{job_id}/metrics?after=1").get_json()["points"]
    assert [p["step"] for p in points] == [2, 3]
    (job_dir / "eval.jsonl").write_text("".join(json.dumps({"step": s, "eval_loss": 0.5}) + "\n" for s in (0, 2))
                                        + "not json\n" + '{"step": 3, "ev')
    metrics = client.get(f"/api/jobs/{job_id}/metrics?after=2").get_json()
    assert [p["step"] for p in metrics["evals"]] == [0, 2]  # every evaluation, whatever `after` says
    sample_dir = job_dir / "samples" / "step_000003"
    sample_dir.mkdir(parents=True)
    (sample_dir / "0.png").write_bytes(b"\x89PNG fake")
    (sample_dir / "prompts.json").write_text(json.dumps(["a red circle"]))
    samples = client.get(f"/api/jobs/{job_id}/samples").get_json()["samples"]
    assert samples[0]["step"] == 3 and samples[0]["prompts"] == ["a red circle"]
    image = client.get(samples[0]["urls"][0])
    assert image.status_code == 200 and image.data == b"\x89PNG fake"
    assert client.get(f"/api/jobs/{job_id}/files/../../studio.db").status_code in (400, 404)
    assert client.get(f"/api/jobs/{job_id}/files/%2e%2e/%2e%2e/studio.db").status_code in (400, 404)
    assert client.get(f"/api/jobs/{job_id}/files/nothing.txt").status_code == 404


def test_previews_are_served_small_and_remade_when_the_image_changes(client, app, dataset):
    from PIL import Image

    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    job_dir = app.config["STUDIO_WORKSPACE"].jobs / job_id
    sample = job_dir / "samples" / "step_000250" / "0.png"
    sample.parent.mkdir(parents=True)
    noise = Image.effect_noise((1024, 1024), 60).convert("RGB")  # a preview as large as the real ones
    noise.save(sample)
    url = f"/api/jobs/{job_id}/files/samples/step_000250/0.png"
    thumb = client.get(url + "?thumb=1")
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp" and thumb.headers["Cache-Control"] == "no-cache"
    assert Image.open(io.BytesIO(thumb.data)).size == (512, 512)
    assert len(thumb.data) * 10 < sample.stat().st_size  # a tenth of the PNG or less
    assert client.get(url).data == sample.read_bytes()  # without ?thumb the file itself
    cached = job_dir / ".thumbs" / "samples" / "step_000250" / "0.webp"
    assert cached.is_file()  # kept in the job folder: deleting the job deletes it
    Image.new("RGB", (640, 320), "red").save(sample)  # rendered again ("Sample now" after a resume)
    os.utime(sample, ns=(cached.stat().st_mtime_ns + 10**9,) * 2)  # newer, even on a coarse clock
    assert Image.open(io.BytesIO(client.get(url + "?thumb=1").data)).size == (512, 256)
    (job_dir / "samples" / "step_000250" / "1.png").write_bytes(b"\x89PNG broken")
    broken = client.get(f"/api/jobs/{job_id}/files/samples/step_000250/1.png?thumb=1")
    assert broken.status_code == 422 and "cannot be read" in broken.get_json()["error"]
    (job_dir / "log.txt").write_text("text\n")  # not an image: ?thumb changes nothing
    assert client.get(f"/api/jobs/{job_id}/files/log.txt?thumb=1").data == b"text\n"
    assert client.get(f"/api/jobs/{job_id}/files/..%2F..%2Fstudio.db?thumb=1").status_code in (400, 404)


def test_datasets_with_thumbnails(client, dataset):
    (listed,) = client.get("/api/datasets").get_json()["datasets"]
    assert listed["name"] == dataset and listed["images"] == 4 and listed["captioned"] == 4
    assert listed["trigger_word"] == "tok" and len(listed["thumbs"]) == 4
    thumb = client.get(listed["thumbs"][0])
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"
    assert client.get(f"/api/datasets/{dataset}/thumbs/..%2fdataset.json").status_code in (400, 404)


def test_config_text_round_trip(client):
    text = client.post("/api/config/render", json={"config": {"steps": 5, "resolutions": [64]}}).get_json()["text"]
    assert "steps: 5" in text
    assert client.post("/api/config/parse", json={"text": text}).get_json()["config"] == {"steps": 5,
                                                                                         "resolutions": [64]}
    bad = client.post("/api/config/parse", json={"text": "steps: [1, 2"})
    assert bad.status_code == 422 and "line" in bad.get_json()["error"]


def test_the_dashboards_stream_holds_every_waiting_job_however_old(client, store, dataset):
    """A job queued long ago (resumed, or waiting behind many) is in the queue the dashboard draws, though fifty newer
    jobs ended since."""
    old = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    for index in range(55):
        newer, _ = store.create("train", name=f"done {index}", dataset=dataset, total=1)
        store.finish(newer.id, "completed")
    text = client.get("/api/events?max_s=0.2").get_data(as_text=True)
    data = json.loads(text.split("event: jobs\ndata: ")[1].split("\n")[0])
    assert old in [job["id"] for job in data["jobs"] if job["status"] == "queued"]
    assert len(data["jobs"]) == 51


def test_event_stream_headers_and_payload(client, dataset):
    client.post("/api/jobs", json=_body(dataset))
    response = client.get("/api/events?max_s=0.2")
    assert response.headers["Cache-Control"] == "no-cache, no-transform"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.mimetype == "text/event-stream"
    text = response.get_data(as_text=True)
    assert "retry:" in text and "event: jobs" in text and "event: bye" in text
    data = json.loads(text.split("event: jobs\ndata: ")[1].split("\n")[0])
    assert data["jobs"][0]["status"] == "queued"
    job_id = data["jobs"][0]["id"]
    one = client.get(f"/api/jobs/{job_id}/events?max_s=0.2").get_data(as_text=True)
    assert "event: job" in one and job_id in one


def test_pages_render(client, dataset):
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    for path in ("/", "/new", "/library", f"/jobs/{job_id}"):
        page = client.get(path, headers={"Accept": "text/html"})
        assert page.status_code == 200, path
    assert client.get("/jobs/nope", headers={"Accept": "text/html"}).status_code == 404


def test_library_lists_finished_and_loose_loras(client, app, store, dataset):
    from tests.test_trainer_worker import _fake_safetensors

    workspace = app.config["STUDIO_WORKSPACE"]
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    store.claim("train", "1:x")
    lora = workspace.jobs / job_id / "lora" / "tiny-lora.safetensors"
    _fake_safetensors(lora)
    store.finish(job_id, "completed", message="done", lora_path=str(lora))
    _fake_safetensors(workspace.loras / "older.safetensors")
    loras = client.get("/api/library").get_json()["loras"]
    assert [entry["file"] for entry in loras] == ["tiny-lora.safetensors", "older.safetensors"]
    assert loras[0]["metadata"]["rank"] == "4" and loras[0]["size"] == lora.stat().st_size
    for entry in loras:
        download = client.get(entry["download_url"])
        assert download.status_code == 200 and download.data[:8] == lora.read_bytes()[:8]
    detail = client.get(f"/api/jobs/{job_id}").get_json()
    assert detail["lora"]["path"] == "lora/tiny-lora.safetensors"
    assert client.get("/api/library/files/..%2fstudio.db").status_code in (400, 404)


def test_a_lora_deleted_from_the_library_leaves_comfyui_too_but_never_a_stranger(client, app, store, dataset):
    import shutil

    from tests.test_trainer_worker import _fake_safetensors
    from trainer import library

    workspace = app.config["STUDIO_WORKSPACE"]
    (workspace.root / "ComfyUI" / "models" / "loras").mkdir(parents=True)
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    job = store.claim("train", "1:x")
    lora = workspace.jobs / job_id / "lora" / "tiny-lora.safetensors"
    _fake_safetensors(lora)
    placed = library.publish(workspace, job, lora)  # hard links in the library and ComfyUI
    store.finish(job_id, "completed", message="done", lora_path=str(lora))
    _fake_safetensors(workspace.loras / "older.safetensors")
    shutil.copyfile(workspace.loras / "older.safetensors", workspace.comfyui_loras / "older.safetensors")  # a copy
    _fake_safetensors(workspace.loras / "mine.safetensors")
    (workspace.comfyui_loras / "mine.safetensors").write_bytes(b"someone else's file of the same name")
    listed = {e["file"]: e for e in client.get("/api/library").get_json()["loras"]}
    assert listed["tiny-lora.safetensors"]["library_file"] == "tiny-lora.safetensors"
    assert listed["older.safetensors"]["library_file"] == "older.safetensors"

    gone = client.delete("/api/library/files/older.safetensors").get_json()
    assert gone["deleted"] == "older.safetensors" and len(gone["removed"]) == 2
    assert not (workspace.loras / "older.safetensors").exists()
    assert not (workspace.comfyui_loras / "older.safetensors").exists()
    assert len(client.delete("/api/library/files/mine.safetensors").get_json()["removed"]) == 1
    assert (workspace.comfyui_loras / "mine.safetensors").read_bytes() == b"someone else's file of the same name"
    # a job's LoRA: the library and ComfyUI copies go; the job keeps its own until the page deletes the job
    client.delete("/api/library/files/tiny-lora.safetensors")
    assert not any(p.exists() for p in placed) and lora.is_file()
    (entry,) = client.get("/api/library").get_json()["loras"]
    assert entry["job_id"] == job_id and entry["library_file"] is None
    assert client.delete("/api/library/files/tiny-lora.safetensors").status_code == 404
    assert client.delete("/api/library/files/..%2fstudio.db").status_code in (400, 404)
    (workspace.loras / "notes.txt").write_text("x")
    assert client.delete("/api/library/files/notes.txt").status_code == 404


def test_a_checkpoint_goes_to_the_library_and_comfyui_under_a_name_that_says_its_step(client, app, store, dataset):
    from tests.test_trainer_worker import _fake_safetensors

    workspace = app.config["STUDIO_WORKSPACE"]
    (workspace.root / "ComfyUI" / "models" / "loras").mkdir(parents=True)
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    checkpoint = workspace.jobs / job_id / "checkpoints" / "step_000120" / "lora.safetensors"
    _fake_safetensors(checkpoint)
    (entry,) = client.get(f"/api/jobs/{job_id}").get_json()["checkpoints"]
    assert entry["download_name"] == "tiny-lora-step120.safetensors" and entry["library_file"] is None
    response = client.post(f"/api/jobs/{job_id}/checkpoints/120/publish")
    assert response.status_code == 200
    assert response.get_json()["file"] == "tiny-lora-step120.safetensors" and response.get_json()["comfyui"] is True
    for folder in (workspace.loras, workspace.comfyui_loras):
        assert (folder / "tiny-lora-step120.safetensors").read_bytes() == checkpoint.read_bytes()
    (entry,) = client.get(f"/api/jobs/{job_id}").get_json()["checkpoints"]
    assert entry["library_file"] == "tiny-lora-step120.safetensors"
    # again: the same file, nothing new; the library lists it, and keeps it when the checkpoint is rotated out
    assert client.post(f"/api/jobs/{job_id}/checkpoints/120/publish").get_json()["file"] == \
        "tiny-lora-step120.safetensors"
    checkpoint.unlink()
    listed = {e["file"] for e in client.get("/api/library").get_json()["loras"]}
    assert "tiny-lora-step120.safetensors" in listed
    assert (workspace.loras / "tiny-lora-step120.safetensors").stat().st_size > 0
    # another job's file of that name is never overwritten
    _fake_safetensors(checkpoint)
    (workspace.loras / "tiny-lora-step120.safetensors").unlink()
    (workspace.loras / "tiny-lora-step120.safetensors").write_bytes(b"another job's LoRA")
    assert client.post(f"/api/jobs/{job_id}/checkpoints/120/publish").get_json()["file"] == \
        f"tiny-lora-step120-{job_id}.safetensors"
    assert (workspace.loras / "tiny-lora-step120.safetensors").read_bytes() == b"another job's LoRA"
    assert client.get(f"/api/jobs/{job_id}").get_json()["checkpoints"][0]["library_file"] == \
        f"tiny-lora-step120-{job_id}.safetensors"
    # a step without a checkpoint, or no such job
    assert client.post(f"/api/jobs/{job_id}/checkpoints/7/publish").status_code == 404
    assert client.post("/api/jobs/nope/checkpoints/120/publish").status_code == 404


def test_a_loose_lora_that_shares_a_name_with_a_jobs_lora_is_still_listed(client, app, store, dataset):
    from tests.test_trainer_worker import _fake_safetensors
    from trainer import library

    workspace = app.config["STUDIO_WORKSPACE"]
    (workspace.loras / "tiny-lora.safetensors").parent.mkdir(parents=True, exist_ok=True)
    (workspace.loras / "tiny-lora.safetensors").write_bytes(b"a LoRA whose job was deleted")
    job_id = client.post("/api/jobs", json=_body(dataset)).get_json()["job"]["id"]
    job = store.claim("train", "1:x")
    lora = workspace.jobs / job_id / "lora" / "tiny-lora.safetensors"
    _fake_safetensors(lora)
    (placed, *_) = library.publish(workspace, job, lora)  # the name is taken: kept as tiny-lora-<job id>
    store.finish(job_id, "completed", message="done", lora_path=str(lora), result={"library_file": placed.name})
    listed = client.get("/api/library").get_json()["loras"]
    assert [(e["job_id"], e["library_file"]) for e in listed] == [
        (job_id, f"tiny-lora-{job_id}.safetensors"), (None, "tiny-lora.safetensors")]


def test_queued_jobs_say_when_they_should_start_and_be_done(client, app, store, dataset):
    from trainer.recipes import get_recipe

    ids = [client.post("/api/jobs", json=_body(dataset, steps=steps)).get_json()["job"]["id"] for steps in (40, 20, 10)]
    recipe = get_recipe("zimage-turbo")

    def whole(steps):  # what the recipe says for the job: 4 images of 64x64 px, demo mode
        config = recipe.config_from_dict({**TINY_CONFIG, "steps": steps})
        return recipe.estimate(config, 4, None, True, [(64, 64)] * 4).seconds

    assert client.get("/api/jobs").get_json()["schedule"] == {}  # no worker runs: no start time is promised
    detail = client.get(f"/api/jobs/{ids[0]}").get_json()
    assert detail["worker_running"] is False and detail["schedule"] is None  # the page says so instead
    store.worker_beat(os.getpid(), "idle")
    assert client.get(f"/api/jobs/{ids[0]}").get_json()["worker_running"] is True
    idle = client.get("/api/jobs").get_json()["schedule"]  # nothing runs: the first starts now
    assert idle[ids[0]] == {"starts_in_s": 0, "done_in_s": round(whole(40))}
    running = store.claim("train", process_token())
    assert running.id == ids[0]

    # while the running job loads it has no measured ETA: its own estimate stands in
    schedule = client.get("/api/jobs").get_json()["schedule"]
    assert schedule[ids[1]]["starts_in_s"] == round(whole(40))
    store.progress(running.id, {"step": 10, "eta_s": 100.0})  # measured from here on
    schedule = client.get("/api/jobs").get_json()["schedule"]
    assert schedule[ids[1]] == {"starts_in_s": 100, "done_in_s": round(100 + whole(20))}
    assert schedule[ids[2]] == {"starts_in_s": round(100 + whole(20)), "done_in_s": round(100 + whole(20) + whole(10))}
    detail = client.get(f"/api/jobs/{ids[2]}").get_json()
    assert detail["queue_position"] == 2 and detail["schedule"] == schedule[ids[2]]
    assert client.get(f"/api/jobs/{ids[0]}").get_json()["schedule"] is None


def test_event_stream_sends_heartbeats_while_nothing_changes(client, monkeypatch):
    from trainer import events

    monkeypatch.setattr(events, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(events, "CHECK_EVERY_S", 0.05)
    text = client.get("/api/events?max_s=0.4").get_data(as_text=True)
    assert text.count(": ping") >= 2 and text.count("event: jobs") == 1


def test_job_name_names_the_lora_when_the_config_does_not(client, dataset):
    config = {k: v for k, v in TINY_CONFIG.items() if k != "name"}
    job = client.post("/api/jobs", json={"name": "Cats v2!", "dataset": dataset, "config": config}).get_json()["job"]
    assert job["name"] == "Cats v2!" and job["config"]["name"] == "Cats-v2"


@pytest.mark.slow
def test_open_streams_end_cleanly_when_the_server_stops(studio_root):
    import threading
    import urllib.request

    from tests.helpers import ServerProcess, free_port

    env = {"STUDIO_ROOT": str(studio_root), "HOST": "127.0.0.1", "TRAINER_PORT": str(free_port())}
    server = ServerProcess("trainer", env, port_var="TRAINER_PORT", log_path=studio_root / "web.log").start()
    received = []

    def listen():
        with urllib.request.urlopen(server.url + "/api/events", timeout=60) as stream:
            assert stream.headers["X-Accel-Buffering"] == "no"
            for line in stream:
                received.append(line.decode())

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not any(line.startswith("event: jobs") for line in received) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.stop() == 0
    thread.join(10)
    assert "event: bye\n" in received  # the stream said goodbye instead of being cut


def test_names_with_spaces_and_unicode(client, app):
    from tests.test_trainer_worker import _png

    folder = app.config["STUDIO_WORKSPACE"].exports / "my set é"
    _png(folder / "a photo #1.png")
    (folder / "a photo #1.txt").write_text("caption")
    (listed,) = client.get("/api/datasets").get_json()["datasets"]
    assert listed["name"] == "my set é"
    assert client.get(listed["thumbs"][0]).status_code == 200


def test_gpu_detection_and_estimates(tmp_path, monkeypatch):
    from trainer import validation

    fake = tmp_path / "nvidia-smi"  # prints what an H100 pod's nvidia-smi prints for this query
    fake.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(validation, "_gpu_cache", {})
    gpu = validation.detect_gpu()
    assert gpu.name == "NVIDIA H100 80GB HBM3" and round(gpu.memory_gb) == 80
    from trainer.recipes import get_recipe

    recipe = get_recipe("zimage-turbo")

    def estimate(**config):
        base = {"steps": 3000, "resolutions": [512, 768, 1024], "rank": 32, "sample_every": 250,
                "sample_prompts": ["a"], "gradient_checkpointing": "auto", "quantize_base": "float8"}
        return recipe.estimate(recipe.config_from_dict({**base, **config}), 20, gpu.name, demo=False)

    e24, e48 = estimate(), estimate(quantize_base="none")
    e16 = estimate(resolutions=[512])
    assert e16.memory_gb < 16 < e24.memory_gb < 24 < e48.memory_gb < 48
    # compiled (the default), float8 matmuls are the faster base (0.86x bf16 on an H200); uncompiled, the slower
    assert 0 < e24.seconds < e48.seconds and e24.device == "gpu"
    assert estimate(quantize_base="none", compile=False).seconds < estimate(compile=False).seconds
    assert estimate(compile=False).seconds > e24.seconds  # compiled blocks: about 1.5x faster steps
    # the extremes, as measured: a float8 base recomputing every block peaked at 9.3 GiB at 1024 px on an
    # H100, and 30 plain blocks hold 35.3 GiB of activations beside the 12.3 GiB bf16 base
    assert estimate(gradient_checkpointing="on").memory_gb < 16
    assert estimate(quantize_base="none", gradient_checkpointing="off").memory_gb > 48
    cpu = recipe.estimate(recipe.default_config(), 20, None, demo=False)
    assert cpu.device == "cpu" and cpu.seconds > e24.seconds


def test_preserve_class_is_counted_in_the_estimate_and_warned_about_when_it_cannot_work(client, dataset):
    plain = client.post("/api/jobs/validate", json=_body(dataset, sample_every=0)).get_json()
    kept = client.post("/api/jobs/validate", json=_body(dataset, sample_every=0, preserve_class="person")).get_json()
    assert kept["ok"] and kept["warnings"] == plain["warnings"]
    assert kept["estimated_duration_s"] > plain["estimated_duration_s"]
    assert kept["config"]["preserve_class"] == "person" and kept["config"]["preserve_weight"] == 1.0

    untriggered = client.post("/api/jobs/validate", json=_body(dataset, trigger_word="", preserve_class="person"))
    report = untriggered.get_json()
    assert report["ok"] and any(w["field"] == "preserve_class" and "needs a trigger word" in w["message"]
                                for w in report["warnings"])
    bad = client.post("/api/jobs/validate", json=_body(dataset, preserve_class="per\nson", preserve_weight=-1))
    assert bad.status_code == 422
    assert {e["field"] for e in bad.get_json()["errors"]} == {"preserve_class", "preserve_weight"}


def test_run_next_moves_a_job_without_telling_its_webhook_it_was_queued_again(client, app, dataset, monkeypatch):
    first = client.post("/api/jobs", json=_body(dataset, seed=1)).get_json()["job"]["id"]
    second = client.post("/api/jobs", json=_body(dataset, seed=2)).get_json()["job"]["id"]
    told = []
    monkeypatch.setattr(app.extensions["trainer_webhooks"], "job_status", lambda job: told.append(job.id))
    moved = client.post(f"/api/jobs/{second}/run-next")
    assert moved.status_code == 200 and moved.get_json()["job"]["status"] == "queued"
    assert told == []  # the same status, a new place: not a "job.queued" again
    assert client.get("/api/jobs").get_json()["queue"][:2] == [second, first]
