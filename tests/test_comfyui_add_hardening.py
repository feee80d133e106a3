"""Adding a LoRA from ComfyUI's loras to the library (trainer.library_comfyui) on a pod set up the way people set them
up: ComfyUI's loras folder a link to a shared folder (a network volume's, another ComfyUI's)."""

from __future__ import annotations

import pytest

import trainer
from tests.test_library_edit import _lora


@pytest.fixture
def studio(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    space = app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    (space.root / "ComfyUI" / "models").mkdir(parents=True)
    return app


def test_a_lora_is_added_from_a_comfyui_loras_folder_that_is_a_link_to_a_shared_folder(studio, tmp_path):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    shared = tmp_path / "shared loras"
    (shared / "styles").mkdir(parents=True)
    (shared / "styles" / "ink wash.safetensors").write_bytes(_lora({"n": "ink"}))
    (space.root / "ComfyUI" / "models" / "loras").symlink_to(shared, target_is_directory=True)
    listed = client.get("/api/library/comfyui").get_json()
    assert [f["file"] for f in listed["files"]] == ["styles/ink wash.safetensors"]
    added = client.post("/api/library/comfyui/styles/ink%20wash.safetensors/add")
    assert added.status_code == 201, added.get_json()
    name = added.get_json()["file"]
    assert (space.loras / name).read_bytes() == _lora({"n": "ink"})
    assert client.get("/api/library/comfyui").get_json()["files"] == []  # added: not offered again


def test_an_add_never_replaces_a_file_placed_under_its_name_a_moment_before(studio, monkeypatch):
    from trainer import library_comfyui, lora_import

    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    loras = space.root / "ComfyUI" / "models" / "loras"
    loras.mkdir()
    (loras / "ink.safetensors").write_bytes(_lora({"n": "comfy"}))
    real, raced = lora_import.free_name, []

    def meanwhile(folder, name, comfyui=None):  # an upload settles the same name between the look and the place
        chosen = real(folder, name, comfyui)
        if not raced:
            raced.append(chosen)
            (folder / chosen).write_bytes(_lora({"n": "uploaded"}))
        return chosen

    monkeypatch.setattr(lora_import, "free_name", meanwhile)
    monkeypatch.setattr(library_comfyui, "free_name", meanwhile, raising=False)  # where it looked before
    added = client.post("/api/library/comfyui/ink.safetensors/add")
    assert added.status_code == 201, added.get_json()
    assert raced == ["ink.safetensors"] and added.get_json()["file"] == "ink-2.safetensors"
    assert (space.loras / "ink.safetensors").read_bytes() == _lora({"n": "uploaded"})  # the upload's, untouched
    assert (space.loras / "ink-2.safetensors").read_bytes() == _lora({"n": "comfy"})
    assert not list(space.loras.glob(".comfyui-*"))
