"""Where the volume's space went: each part of the workspace once (a hard-linked LoRA counts in its job,
not again in the library), recently deleted things apart from the datasets, and the volume's free space."""

from __future__ import annotations

import os

import trainer
from studio.workspace import Workspace
from trainer import storage


def _file(path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_storage_counts_every_part_once(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    ws: Workspace = app.config["STUDIO_WORKSPACE"]
    _file(ws.models / "zimage" / "weights.bin", 1000)
    _file(ws.jobs / "j1" / "checkpoints" / "step_000010" / "state.pt", 300)
    _file(ws.jobs / "j1" / "lora" / "cat.safetensors", 200)
    ws.loras.mkdir(parents=True, exist_ok=True)
    os.link(ws.jobs / "j1" / "lora" / "cat.safetensors", ws.loras / "cat.safetensors")  # as publish places it
    _file(ws.loras / "loose.safetensors", 50)
    _file(ws.datasets / "cats" / "a.png", 100)
    _file(ws.datasets / "cats" / ".trash" / "1700000000-abc" / "old.png", 40)
    _file(ws.datasets / ".trash" / "1700000000-dogs" / "b.png", 30)
    _file(ws.exports / ".versions" / "v1" / "a.png", 100)
    _file(ws.cache / "latents" / "x.safetensors", 10)
    _file(ws.root / ".cache" / "pip" / "y.whl", 5)

    found = app.test_client().get("/api/storage").get_json()
    parts = {p["key"]: p["bytes"] for p in found["parts"]}
    assert parts == {"models": 1000, "jobs": 500, "loras": 50, "deleted": 70, "datasets": 100, "exports": 100,
                     "cache": 15}
    assert found["total"] > found["free"] > 0 and found["root"] == str(ws.root)
    assert all(p["hint"] for p in found["parts"])


def test_storage_is_measured_at_most_every_30_seconds(tmp_path):
    ws = Workspace(tmp_path).ensure()
    first = storage.cached_measure(ws, now=1000.0)
    _file(ws.models / "new.bin", 10)
    assert storage.cached_measure(ws, now=1020.0) is first
    again = storage.cached_measure(ws, now=1031.0)
    assert {p["key"]: p["bytes"] for p in again["parts"]}["models"] == 10


def test_the_training_state_of_earlier_checkpoints_of_jobs_not_running_can_be_freed(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    ws: Workspace = app.config["STUDIO_WORKSPACE"]
    store, client = app.extensions["job_store"], app.test_client()
    done, busy = (store.create("train", name=name, config={"name": name})[0] for name in ("done", "busy"))
    store.start(done.id, "1:x")
    store.finish(done.id, "stopped", resumable=True)
    store.start(busy.id, "1:x")
    for job in (done, busy):
        for step in (10, 20, 30):
            folder = ws.jobs / job.id / "checkpoints" / f"step_{step:06d}"
            _file(folder / "state.pt", 300)
            _file(folder / "lora.safetensors", 20)
    storage._cache.clear()
    found = client.get("/api/storage").get_json()
    assert found["freeable"] == {"bytes": 600, "checkpoints": 2}  # not the last one, not the running job's
    assert client.post("/api/storage/free-states").get_json() == {"checkpoints": 2, "freed": 600}
    kept = ws.jobs / done.id / "checkpoints"
    assert not (kept / "step_000010" / "state.pt").exists() and (kept / "step_000010" / "lora.safetensors").is_file()
    assert (kept / "step_000030" / "state.pt").is_file()  # resume goes on from it
    assert all((ws.jobs / busy.id / "checkpoints" / f"step_{s:06d}" / "state.pt").is_file() for s in (10, 20, 30))
    assert client.get("/api/storage").get_json()["freeable"] == {"bytes": 0, "checkpoints": 0}
    assert client.post("/api/storage/free-states").get_json() == {"checkpoints": 0, "freed": 0}
