"""A .safetensors file whose header is JSON nested deeper than Python recurses (a hostile file, or garbage that
happens to start with thousands of '['). json raised RecursionError, which no reader caught: copied into the library
(or ComfyUI's loras) it made GET /api/library answer 500, so the library page showed no LoRA at all, and an upload of
it failed with "Unexpected error: RecursionError". It is read as what it is: not a .safetensors file."""

from __future__ import annotations

import struct

import pytest

import trainer
from tests.test_library_upload import _send
from tests.test_lora_import import wait_import
from trainer.lora_file import LoraFileError, read_header

DEPTH = 200_000


def _deep(path):
    raw = b"[" * DEPTH + b"]" * DEPTH
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


@pytest.fixture
def studio(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1, UPLOAD_CHUNK_MB=1, MAX_UPLOAD_MB=3))
    (app.config["STUDIO_WORKSPACE"].root / "ComfyUI").mkdir()
    return app


def test_a_header_nested_too_deep_is_not_safetensors(tmp_path):
    _deep(tmp_path / "deep.safetensors")
    with pytest.raises(LoraFileError, match="not a .safetensors file"):
        read_header(tmp_path / "deep.safetensors")


def test_the_library_still_lists_its_loras_beside_such_a_file(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    _deep(space.loras / "deep.safetensors")
    space.comfyui_loras.mkdir(parents=True)
    _deep(space.comfyui_loras / "theirs.safetensors")
    listed = client.get("/api/library")
    assert listed.status_code == 200
    assert [e["file"] for e in listed.get_json()["loras"]] == ["deep.safetensors"]
    comfy = client.get("/api/library/comfyui")
    assert comfy.status_code == 200 and comfy.get_json()["files"] == []


def test_an_upload_of_it_is_refused_in_a_sentence(studio, tmp_path):
    client = studio.test_client()
    _deep(tmp_path / "deep.safetensors")
    sid = _send(client, "deep.safetensors", (tmp_path / "deep.safetensors").read_bytes())
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "failed"
    assert job["error"] == "deep.safetensors is not a .safetensors file (or it is damaged or cut short)."


def test_a_file_that_cannot_be_converted_is_named_as_the_user_named_it(studio):
    """The conversion read the upload under its random name on the way in, and said so: "odd.safetensors:
    5fced2a71156b894.safetensors is not a LoRA file this studio can read (...)"."""
    import json
    import re

    client = studio.test_client()
    header = json.dumps({"lora_unet_layers_0_attention_to_q.lora_down.weight":  # kohya's names: it is converted
                         {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, "a"]}}).encode()
    sid = _send(client, "odd.safetensors", struct.pack("<Q", len(header)) + header)
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("odd.safetensors"), job["error"]
    assert not re.search(r"[0-9a-f]{16}\.safetensors", job["error"]), job["error"]
