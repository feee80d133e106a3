"""A job that starts from a LoRA of the library (config `init_lora`): the file's checks without torch, the
request's errors, the copy the job keeps in its folder, and a real run through the worker."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import trainer
from studio.jobs import JobStore
from studio.settings import load_settings
from studio.workspace import Workspace
from tests.test_trainer_worker import TINY_CONFIG, make_export
from trainer.lokr_layout import factor_of, factor_shapes
from trainer.lora_file import START_LORA_FILE, LoraFileError, check_start_lora, lora_ranks, read_header
from trainer.run_job import stage_start_lora
from trainer.worker import Worker


def write_lora(path, modules: dict[str, int], prefix: str = "diffusion_model.") -> None:
    """A LoRA file of `modules` ({name: rank}) with small random weights (in 8, out 8)."""
    tensors = {}
    for name, rank in modules.items():
        tensors[f"{prefix}{name}.lora_A.weight"] = np.zeros((rank, 8), np.float32)
        tensors[f"{prefix}{name}.lora_B.weight"] = np.zeros((8, rank), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


ATTENTION = {f"layers.{i}.attention.{m}": 4 for i in range(2) for m in ("to_q", "to_k", "to_v", "to_out.0")}


def write_lokr(path, modules, factor: int, w2_product: bool = False) -> None:
    """A LyCORIS LoKr file of `modules` (8 in, 8 out each) split as `factor` splits them; w2 stored as a product
    w2_a · w2_b (rank 1) with `w2_product`."""
    (p, q), (r, s) = factor_shapes(8, 8, factor)
    tensors = {}
    for name in modules:
        tensors[f"diffusion_model.{name}.lokr_w1"] = np.zeros((p, q), np.float32)
        if w2_product:
            tensors[f"diffusion_model.{name}.lokr_w2_a"] = np.zeros((r, 1), np.float32)
            tensors[f"diffusion_model.{name}.lokr_w2_b"] = np.zeros((1, s), np.float32)
        else:
            tensors[f"diffusion_model.{name}.lokr_w2"] = np.zeros((r, s), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def test_a_lora_file_is_checked_from_its_header(tmp_path):
    path = tmp_path / "mine.safetensors"
    write_lora(path, ATTENTION, prefix="transformer.")
    assert lora_ranks(read_header(path)) == ATTENTION
    check_start_lora(path, 4, "attention")
    check_start_lora(path, 4, "all")
    with pytest.raises(LoraFileError, match="mine has rank 4, not 8: set the LoRA rank to 4"):
        check_start_lora(path, 8, "all")
    write_lora(path, {**ATTENTION, "layers.0.feed_forward.w1": 4})
    with pytest.raises(LoraFileError, match="trains layers.0.feed_forward.w1, outside the LoRA layers 'attention'"):
        check_start_lora(path, 4, "attention")
    write_lora(path, {**ATTENTION, "layers.1.attention.to_q": 8})
    with pytest.raises(LoraFileError, match="modules of ranks 4 to 8"):
        check_start_lora(path, 4, "all")
    write_lora(path, {"single_blocks.0.linear1": 4})  # another model's LoRA
    with pytest.raises(LoraFileError, match="not a LoRA for this model"):
        check_start_lora(path, 4, "all")
    save_file({"weight": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(LoraFileError, match="holds no LoRA weights"):
        check_start_lora(path, 4, "all")
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(LoraFileError, match="not a .safetensors file"):
        check_start_lora(path, 4, "all")


def test_a_lokr_file_starts_a_lokr_job_of_its_factor(tmp_path):
    path = tmp_path / "kron.safetensors"
    write_lokr(path, ATTENTION, 4)
    assert factor_of(read_header(path)) == 4
    check_start_lora(path, 32, "attention", network="lokr", factor=4)
    check_start_lora(path, 32, "all", network="lokr", factor=4)
    with pytest.raises(LoraFileError, match="kron splits layers.0.attention.to_k into 4x4 and 2x2, not as LoKr factor "
                                            "-1 does: set the LoKr factor to 4"):
        check_start_lora(path, 32, "all", network="lokr", factor=-1)
    with pytest.raises(LoraFileError, match="kron is a LyCORIS LoKr: set Network to lokr"):
        check_start_lora(path, 32, "all")
    write_lokr(path, {**ATTENTION, "layers.0.feed_forward.w1": 4}, -1, w2_product=True)  # w2 as a product: its shape
    assert factor_of(read_header(path)) == -1
    with pytest.raises(LoraFileError, match="trains layers.0.feed_forward.w1, outside the LoRA layers 'attention'"):
        check_start_lora(path, 32, "attention", network="lokr", factor=-1)
    write_lokr(path, {"single_blocks.0.linear1": 4}, 4)  # another model's
    with pytest.raises(LoraFileError, match="not have \\(single_blocks.0.linear1\\)"):
        check_start_lora(path, 32, "all", network="lokr", factor=4)
    write_lora(path, ATTENTION)
    assert factor_of(read_header(path)) is None
    with pytest.raises(LoraFileError, match="kron is not a LyCORIS LoKr: set Network to lora"):
        check_start_lora(path, 4, "all", network="lokr", factor=4)


@pytest.fixture
def client(make_settings):
    settings = make_settings(STUDIO_DEMO=1)
    make_export(settings.root)
    write_lora(Workspace(settings.root).loras / "cat-v1.safetensors", ATTENTION)
    write_lora(Workspace(settings.root).loras / "cat v1 (by hand).safetensors", ATTENTION)
    write_lokr(Workspace(settings.root).loras / "cat-kron.safetensors", ATTENTION, 4)
    return trainer.create_app(settings).test_client()


def _check(client, **config) -> dict:
    body = {"dataset": "tiny-set", "config": {**TINY_CONFIG, **config}}
    return client.post("/api/jobs/validate", json=body).get_json()


def test_the_request_names_a_library_lora_of_its_rank_and_layers(client):
    assert _check(client, init_lora="cat-v1")["ok"]
    assert _check(client, init_lora="cat v1 (by hand)")["ok"]  # a file copied in by hand keeps its name
    errors = {e["field"]: e["message"] for e in _check(client, init_lora="cat-v2")["errors"]}
    assert errors["init_lora"].startswith("There is no LoRA named 'cat-v2' in the LoRA library")
    errors = {e["field"]: e["message"] for e in _check(client, init_lora="cat-v1", rank=16)["errors"]}
    assert errors["init_lora"] == "cat-v1 has rank 4, not 16: set the LoRA rank to 4 to start from it."
    errors = {e["field"]: e["message"] for e in _check(client, init_lora="../../etc/passwd")["errors"]}
    assert "The name of a LoRA in the library" in errors["init_lora"]


def test_a_lokr_of_the_library_starts_a_lokr_job_and_the_library_says_its_factor(client):
    assert _check(client, init_lora="cat-kron", network="lokr", lokr_factor=4)["ok"]
    errors = {e["field"]: e["message"] for e in _check(client, init_lora="cat-kron")["errors"]}
    assert errors["init_lora"].startswith("cat-kron is a LyCORIS LoKr: set Network to lokr")
    errors = {e["field"]: e["message"] for e in _check(client, init_lora="cat-kron", network="lokr")["errors"]}
    assert errors["init_lora"].endswith("not as LoKr factor 16 does: set the LoKr factor to 4.")
    errors = {e["field"]: e["message"] for e in _check(client, init_lora="cat-v1", network="lokr")["errors"]}
    assert errors["init_lora"] == "cat-v1 is not a LyCORIS LoKr: set Network to lora to start from it."
    files = {f["name"]: f for f in client.get("/api/library/files").get_json()["files"]}
    assert (files["cat-kron"]["lokr"], files["cat-kron"]["lokr_factor"]) == (True, 4)
    assert (files["cat-v1"]["lokr"], files["cat-v1"]["lokr_factor"], files["cat-v1"]["rank"]) == (False, None, 4)
    cards = {c["name"]: c for c in client.get("/api/library").get_json()["loras"]}
    assert (cards["cat-kron"]["lokr"], cards["cat-kron"]["lokr_factor"]) == (True, 4)


def test_a_queued_job_keeps_the_lora_even_when_the_library_loses_it(client, make_settings):
    response = client.post("/api/jobs", json={"dataset": "tiny-set", "config": {**TINY_CONFIG, "init_lora": "cat-v1"}})
    assert response.status_code == 201, response.get_json()
    workspace = Workspace(make_settings().root)
    (workspace.loras / "cat-v1.safetensors").unlink()
    assert (workspace.job_dir(response.get_json()["job"]["id"]) / START_LORA_FILE).is_file()


def test_the_job_keeps_its_own_copy_of_the_lora_it_starts_from(tmp_path):
    workspace = Workspace(tmp_path)
    write_lora(workspace.loras / "cat-v1.safetensors", ATTENTION)
    store = JobStore(tmp_path / "studio.db")
    job, _ = store.create("train", config={"init_lora": "cat-v1"})
    job_dir = tmp_path / "jobs" / job.id
    stage_start_lora(workspace, job, job_dir)
    copy = job_dir / START_LORA_FILE
    assert copy.read_bytes() == (workspace.loras / "cat-v1.safetensors").read_bytes()
    # the library's file replaced or deleted later: the job keeps what it started from
    write_lora(workspace.loras / "cat-v1.safetensors", {"layers.0.attention.to_q": 8})
    stage_start_lora(workspace, job, job_dir)
    assert lora_ranks(read_header(copy)) == ATTENTION
    (workspace.loras / "cat-v1.safetensors").unlink()
    stage_start_lora(workspace, job, job_dir)
    assert copy.is_file() and not list(job_dir.glob(".*.tmp"))
    # a job that never ran, whose LoRA left the library, fails with a sentence saying so
    later, _ = store.create("train", config={"init_lora": "cat-v1"})
    with pytest.raises(LoraFileError, match="no longer in the LoRA library"):
        stage_start_lora(workspace, later, tmp_path / "jobs" / later.id)


@pytest.mark.slow
@pytest.mark.parametrize("network", [{}, {"network": "lokr", "lokr_factor": 4}], ids=["lora", "lokr"])
def test_the_worker_trains_on_from_a_finished_lora(demo_root, network):
    settings = load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"})
    make_export(demo_root)
    client = trainer.create_app(settings).test_client()
    config = {**TINY_CONFIG, "steps": 3, "sample_every": 0, "save_every": 3, **network}
    first = client.post("/api/jobs", json={"dataset": "tiny-set", "config": config}).get_json()["job"]
    worker = Worker(settings, poll_s=0.1)
    assert worker.run_once().status == "completed"
    assert (Workspace(demo_root).loras / "tiny-lora.safetensors").is_file()
    card = next(c for c in client.get("/api/library").get_json()["loras"] if c["job_id"] == first["id"])
    assert (card["lokr"], card["lokr_factor"]) == ((True, 4) if network else (False, None))

    more = {**config, "name": "tiny-lora-v2", "init_lora": "tiny-lora"}
    response = client.post("/api/jobs", json={"dataset": "tiny-set", "config": more})
    assert response.status_code == 201, response.get_json()
    second = worker.run_once()
    assert second.id == response.get_json()["job"]["id"] != first["id"]
    assert second.status == "completed", second.error
    job_dir = Workspace(demo_root).jobs / second.id
    assert (job_dir / START_LORA_FILE).is_file()
    assert "Starting from the LoRA tiny-lora (" in (job_dir / "log.txt").read_text()
