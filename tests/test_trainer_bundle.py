"""Download all: everything a job made in one streamed ZIP (the LoRA and what comes beside it, every
checkpoint under a name that says its step, previews, renders with their prompts, config, metrics, log)."""

from __future__ import annotations

import io
import json
import zipfile

import trainer
from studio.workspace import Workspace
from tests.test_trainer_renders import REQUEST, finished_job
from trainer import renders
from trainer.bundle import safe_label


def _finished(make_settings, demo_paths):
    """The trainer's app in demo mode with a finished job: its client, store, job and folder."""
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    client, store = app.test_client(), app.extensions["job_store"]
    root = app.config["STUDIO_SETTINGS"].root
    job = finished_job(store, root, demo_paths)
    return client, store, job, Workspace(root).jobs / job.id


def test_download_all_holds_everything_the_job_made(make_settings, demo_root, demo_paths):
    client, store, job, job_dir = _finished(make_settings, demo_paths)
    (job_dir / "lora" / "README.txt").write_text("how to use it\n")
    (job_dir / "samples" / "step_000006").mkdir(parents=True)
    (job_dir / "samples" / "step_000006" / "0.png").write_bytes(b"png-bytes")
    (job_dir / "samples" / ".tmp-step_000009-x").mkdir()  # a preview step being written: left out
    (job_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (job_dir / "log.txt").write_text("[2026-12-01 10:00:00] started\n")
    config = renders.parse(REQUEST, job, job_dir)
    render = store.create(renders.KIND, name="r", parent_id=job.id, config=config, total=2)[0]
    (job_dir / "renders" / render.id).mkdir(parents=True)
    (job_dir / "renders" / render.id / "0.png").write_bytes(b"render-bytes")
    (job_dir / "renders" / render.id / "1.png").write_bytes(b"lora-bytes")
    store.finish(render.id, "completed", result={"images": [{"file": "0.png", "strength": 0.0, "lora": None},
                                                            {"file": "1.png", "strength": 0.5, "lora": 0},
                                                            {"file": "../../studio.db", "strength": 1.0}]})

    label = safe_label(config["loras"][0]["label"])  # the picture's LoRA, in its name ("final-LoRA-step-6")
    info = client.get(f"/api/jobs/{job.id}/bundle").get_json()
    response = client.get(f"/api/jobs/{job.id}/download.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == 'attachment; filename="tiny-lora.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    names = archive.namelist()
    assert names == ["tiny-lora/README.txt", "tiny-lora/tiny-lora.safetensors",
                     "tiny-lora/checkpoints/tiny-lora-step3.safetensors", "tiny-lora/previews/step_000006/0.png",
                     f"tiny-lora/renders/{render.id}/0_base.png", f"tiny-lora/renders/{render.id}/1_{label}_x0.5.png",
                     "tiny-lora/renders/renders.json",
                     "tiny-lora/config.json", "tiny-lora/metrics.jsonl", "tiny-lora/log.txt"]
    assert info["files"] == len(names) and info["size"] == sum(i.file_size for i in archive.infolist())
    assert archive.read("tiny-lora/tiny-lora.safetensors") == (job_dir / "lora" / "tiny-lora.safetensors").read_bytes()
    assert archive.read("tiny-lora/checkpoints/tiny-lora-step3.safetensors") == \
        (job_dir / "checkpoints" / "step_000003" / "lora.safetensors").read_bytes()
    (listed,) = json.loads(archive.read("tiny-lora/renders/renders.json"))
    assert listed["prompt"] == "tok, a red circle" and listed["seed"] == 7
    assert json.loads(archive.read("tiny-lora/config.json"))["config"]["rank"] == 4
    assert client.get("/api/jobs/nope/download.zip").status_code == 404


def test_download_all_carries_every_prompts_timelapse_looked_at_or_not(make_settings, demo_root, demo_paths):
    from PIL import Image

    from tests.test_trainer_timelapse import _previews
    from trainer.timelapse import timelapse

    client, store, job, job_dir = _finished(make_settings, demo_paths)
    _previews(job_dir, prompts=3)
    watched = timelapse(job_dir, 0)  # prompt 1 was watched on the job page; the others never were
    (job_dir / "samples" / "step_000004" / "2.png").write_bytes(b"not a picture")  # prompt 3's cannot be read

    info = client.get(f"/api/jobs/{job.id}/bundle").get_json()
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job.id}/download.zip").data))
    names = archive.namelist()
    made = [name for name in names if "/timelapse/" in name]
    assert made == ["tiny-lora/previews/timelapse/prompt-1.webp", "tiny-lora/previews/timelapse/prompt-2.webp"]
    assert archive.read(made[0]) == watched.read_bytes()
    assert Image.open(io.BytesIO(archive.read(made[1]))).n_frames == 3  # made as the archive was written
    assert (job_dir / "samples" / "timelapse" / "1-step_4-3.webp").is_file()  # and kept for the job page
    assert info["files"] == len(names) + 1  # the unreadable prompt counted before it was tried
