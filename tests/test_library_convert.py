"""A LoRA copied into the library by hand in another trainer's layout: its card says what it is and offers Convert
(it is left out of "Start from LoRA" and Merge until then); Convert writes it in this studio's names under the same
name (ComfyUI's copy, the user's own, left as it is), keeps the file as it was in Recently deleted, and changes
nothing when the file was replaced meanwhile. An OFT or DoRA file's card says why it cannot be used; what is left in
the library's incoming folder by a restart goes at the next start."""

from __future__ import annotations

import os
import time

import numpy as np

import trainer
from tests.test_library_edit import studio  # noqa: F401 - the trainer app with ComfyUI installed, a fixture
from tests.test_loha_lora import _loha
from tests.test_lora_import import wait_import
from trainer import library_convert, lora_import, renders
from trainer.lora_file import read_header
from trainer.lora_formats import foreign_kind
from trainer.lora_resize import encode, read_tensors

DIM = 16


def _kohya(alpha: float = 2.0) -> tuple[bytes, np.ndarray]:
    """A kohya LoRA of one layer (rank 4, alpha 2) and the change it makes."""
    rng = np.random.default_rng(1)
    down, up = rng.standard_normal((4, DIM)).astype(np.float32), rng.standard_normal((DIM, 4)).astype(np.float32)
    key = "lora_unet_layers_0_attention_to_q"
    data = encode({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": np.array(alpha)},
                  "F32", {"ss_network_dim": "4"})
    return data, alpha / 4 * up @ down


def _copied_in(app, name: str, data: bytes, comfyui: bool = True):
    """A file copied into the library by hand, linked into ComfyUI's loras as the library does."""
    from trainer.library import also_in_comfyui

    space = app.config["STUDIO_WORKSPACE"]
    (space.loras / name).write_bytes(data)
    if comfyui:
        also_in_comfyui(space, space.loras / name)
    return space.loras / name


def _card(client, file: str) -> dict:
    return next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == file)


def _convert(client, file: str) -> dict:
    answer = client.post(f"/api/library/files/{file}/convert")
    assert answer.status_code == 202, answer.get_json()
    return wait_import(client, answer.get_json()["job"]["id"])


def test_a_kohya_file_copied_in_is_converted_in_place_and_the_original_is_kept(studio):  # noqa: F811
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    data, change = _kohya()
    path = _copied_in(studio, "musubi.safetensors", data)
    card = _card(client, "musubi.safetensors")
    assert card["foreign"] == "kohya's key names" and card["refused"] is None and card["rank"] is None
    assert client.get("/api/library/files").get_json()["files"] == []  # not offered to start from or merge yet
    job = _convert(client, "musubi.safetensors")
    assert job["status"] == "completed", job
    assert job["message"].startswith("Converted musubi.safetensors from kohya's key names (rank 4); the file as it "
                                     "was is in Recently deleted")
    header, tensors = read_tensors(path)
    assert header["__metadata__"]["converted_from"] == "kohya's key names"
    prefix = "diffusion_model.layers.0.attention.to_q"
    np.testing.assert_allclose(tensors[f"{prefix}.lora_B.weight"] @ tensors[f"{prefix}.lora_A.weight"], change,
                               rtol=1e-5, atol=1e-5)
    assert (space.comfyui_loras / path.name).read_bytes() == data  # the user's own in ComfyUI: left as it was
    card = _card(client, "musubi.safetensors")
    assert card["foreign"] is None and card["rank"] == 4 and card["smaller"]
    assert not card["in_comfyui"]  # ComfyUI's file of its name is the user's own now: Delete leaves it
    assert [f["name"] for f in client.get("/api/library/files").get_json()["files"]] == ["musubi"]
    kept = client.get("/api/trash").get_json()["entries"]
    assert [e["name"] for e in kept] == ["musubi.safetensors, before converting from kohya's key names"]
    entry = space.trainer / ".trash" / kept[0]["id"] / "musubi.safetensors"
    assert entry.read_bytes() == data  # byte for byte, as it was
    again = client.post(f"/api/trash/{kept[0]['id']}/restore")
    assert again.status_code == 409 and "has a file named musubi.safetensors again" in again.get_json()["error"]
    assert not list((space.loras / lora_import.INCOMING).iterdir())
    twice = client.post("/api/library/files/musubi.safetensors/convert")
    assert twice.status_code == 409 and "in this studio's layout already" in twice.get_json()["error"]


def test_a_loha_copied_in_becomes_a_lora_and_comfyuis_own_file_of_that_name_is_left(studio):  # noqa: F811
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    tensors, _changes = _loha(np.random.default_rng(2), dim=2)
    path = _copied_in(studio, "loha.safetensors", encode(tensors, "F32", {}), comfyui=False)
    space.comfyui_loras.mkdir(parents=True, exist_ok=True)
    (space.comfyui_loras / "loha.safetensors").write_bytes(b"ComfyUI's own, another file")
    assert _card(client, "loha.safetensors")["foreign"] == "kohya's key names and a LyCORIS LoHa"
    job = _convert(client, "loha.safetensors")
    assert job["status"] == "completed" and "(rank 4)" in job["message"], job
    assert job["result"]["converted_from"] == ["kohya's key names", "a LyCORIS LoHa of dim 2, exactly"]
    assert foreign_kind(read_header(path)) is None
    assert (space.comfyui_loras / "loha.safetensors").read_bytes() == b"ComfyUI's own, another file"


def test_what_cannot_be_converted_says_why_and_nothing_changes(studio):  # noqa: F811
    client = studio.test_client()
    from trainer.jobs_api import store

    dora = _copied_in(studio, "dora.safetensors", encode(
        {"diffusion_model.layers.0.attention.to_q.dora_scale": np.ones((1, DIM), np.float32)}, "F32", {}))
    card = _card(client, "dora.safetensors")
    assert card["foreign"] is None and card["refused"].startswith("This is a DoRA file, not a LoRA: ComfyUI loads it")
    answer = client.post("/api/library/files/dora.safetensors/convert")
    assert answer.status_code == 422 and "a DoRA file" in answer.get_json()["error"]
    assert client.post("/api/library/files/none.safetensors/convert").status_code == 404
    assert client.post("/api/library/files/..%2f..%2fstudio.db/convert").status_code in (400, 404)
    data, _ = _kohya()
    path = _copied_in(studio, "busy.safetensors", data)
    tried = client.post("/api/library/files/busy.safetensors/renders", json={"prompt": "a cat"})
    assert tried.status_code == 422 and tried.get_json()["error"] == (
        "busy.safetensors is in kohya's key names, as another trainer wrote it: Convert it on its card in the LoRA "
        "library first (ComfyUI loads it as it is).")  # Try it, Merge and Train further say the same
    with studio.app_context():
        jobs = store()
    tried = jobs.create(renders.KIND, name="try", config={renders.LIBRARY_FILE: path.name})[0]
    answer = client.post("/api/library/files/busy.safetensors/convert")
    assert answer.status_code == 409 and "being rendered now" in answer.get_json()["error"]
    jobs.finish(tried.id, "completed")
    waiting = jobs.create(lora_import.KIND, name="Convert busy.safetensors", config={"convert": path.name})[0]
    assert _card(client, "busy.safetensors")["converting"] == waiting.id  # a page loaded now follows it
    answer = client.post("/api/library/files/busy.safetensors/convert")
    assert answer.status_code == 409 and "being converted already" in answer.get_json()["error"]
    assert path.read_bytes() == data and dora.is_file() and client.get("/api/trash").get_json()["entries"] == []


def test_a_file_replaced_while_it_converts_is_left_as_it_is_now(studio, monkeypatch):  # noqa: F811
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    data, _ = _kohya()
    path = _copied_in(studio, "moving.safetensors", data)
    newer, _ = _kohya(alpha=8.0)
    real = lora_import.in_our_names

    def meanwhile(job, incoming, name):  # someone copies a newer file over it while it converts
        path.unlink()
        path.write_bytes(newer)
        return real(job, incoming, name)

    monkeypatch.setattr(library_convert.lora_import, "in_our_names", meanwhile)
    job = _convert(client, "moving.safetensors")
    assert job["status"] == "failed" and "was renamed, deleted or replaced while it was converted" in job["error"]
    assert path.read_bytes() == newer and client.get("/api/trash").get_json()["entries"] == []
    assert not list((space.loras / lora_import.INCOMING).iterdir())


def test_foreign_kind_names_the_original_checkpoints_layouts(tmp_path):
    ones = np.ones((4, DIM), np.float32)
    fused = {"diffusion_model.layers.0.attention.qkv.lora_A.weight": ones,
             "diffusion_model.layers.0.attention.qkv.lora_B.weight": np.ones((3 * DIM, 4), np.float32)}
    out = {"diffusion_model.layers.0.attention.out.lora_A.weight": ones,
           "diffusion_model.layers.0.attention.out.lora_B.weight": ones.T}
    ours = {"diffusion_model.layers.0.attention.to_q.lora_A.weight": ones,
            "diffusion_model.layers.0.attention.to_q.lora_B.weight": ones.T}
    for tensors, kind in ((fused, "the original checkpoint's fused qkv"),
                          (out, "the original checkpoint's module names"), (ours, None)):
        (tmp_path / "x.safetensors").write_bytes(encode(tensors, "F32", {}))
        assert foreign_kind(read_header(tmp_path / "x.safetensors")) == kind


def test_what_a_restart_left_in_the_incoming_folder_goes_at_the_next_start(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    incoming = app.config["STUDIO_WORKSPACE"].loras / lora_import.INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "left.safetensors").write_bytes(b"half a download")
    (incoming / "fresh.safetensors").write_bytes(b"a download in progress")
    old = time.time() - lora_import.INCOMING_IDLE_S - 60
    os.utime(incoming / "left.safetensors", (old, old))
    trainer.create_app(make_settings(STUDIO_DEMO=1))
    assert [p.name for p in incoming.iterdir()] == ["fresh.safetensors"]


def test_a_copy_of_a_lora_the_library_holds_converted_goes_to_recently_deleted(studio):  # noqa: F811
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    data, _ = _kohya()
    _copied_in(studio, "first.safetensors", data, comfyui=False)
    assert _convert(client, "first.safetensors")["status"] == "completed"
    _copied_in(studio, "again.safetensors", data)  # the same download copied in once more, into ComfyUI's loras too
    job = _convert(client, "again.safetensors")
    assert job["status"] == "completed" and job["result"]["file"] == "first.safetensors", job
    assert job["message"].startswith("again.safetensors, converted from kohya's key names, is first.safetensors of "
                                     "the library (rank 4): this copy went to Recently deleted")
    assert [p.name for p in space.loras.glob("*.safetensors")] == ["first.safetensors"]
    assert (space.comfyui_loras / "again.safetensors").read_bytes() == data  # ComfyUI's, the user's own: stays
    names = [e["name"] for e in client.get("/api/trash").get_json()["entries"]]
    assert names[0] == "again.safetensors, the same LoRA as first.safetensors"
