"""A .safetensors file whose header names Z-Image's layers but which no reader can load (its tensors' bytes are not
what their shapes make, a lora_A without its lora_B, rank 0, integer weights) is refused when it is uploaded, with a
sentence, and leaves nothing in the library: it used to be "Added ... (rank 4)", and failed only when tried."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import trainer
from tests.test_lora_import import wait_import
from trainer.lora_resize import encode

LAYER = "diffusion_model.layers.0.attention.to_q"


@pytest.fixture
def studio(make_settings):
    return trainer.create_app(make_settings(STUDIO_DEMO=1))


def _raw(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _pair(down: tuple, up: tuple) -> bytes:
    return encode({f"{LAYER}.lora_A.weight": np.ones(down, np.float32),
                   f"{LAYER}.lora_B.weight": np.ones(up, np.float32)}, "F32", {})


def _typed(dtype: str, size: int, a_bytes: int) -> bytes:
    return _raw({f"{LAYER}.lora_A.weight": {"dtype": dtype, "shape": [4, 64], "data_offsets": [0, a_bytes]},
                 f"{LAYER}.lora_B.weight": {"dtype": dtype, "shape": [64, 4], "data_offsets": [a_bytes, 2 * a_bytes]}},
                b"\0" * (2 * a_bytes if size is None else size))


UNLOADABLE = {
    "offsets.safetensors": (_typed("F32", 32, 16), "other bytes than its shape and dtype make"),
    "integers.safetensors": (_typed("I8", None, 256), "holds I8 numbers"),
    "only-a.safetensors": (encode({f"{LAYER}.lora_A.weight": np.ones((4, 64), np.float32)}, "F32", {}),
                           "has no lora_B of its lora_A's rank"),
    "ranks.safetensors": (_pair((4, 64), (64, 8)), "has no lora_B of its lora_A's rank"),
    "rank-0.safetensors": (_pair((0, 64), (64, 0)), "has no lora_B of its lora_A's rank"),
    "flat.safetensors": (_pair((4,), (9,)), "has no lora_B of its lora_A's rank"),
}


def _upload(client, name: str, data: bytes) -> dict:
    session = client.post("/api/library/uploads", json={"filename": name, "size": len(data)}).get_json()
    assert client.put(f"/api/library/uploads/{session['id']}/chunks/0", data=data).status_code == 200
    done = client.post(f"/api/library/uploads/{session['id']}/complete")
    assert done.status_code == 202, done.get_json()
    return wait_import(client, done.get_json()["job"]["id"])


@pytest.mark.parametrize("name", sorted(UNLOADABLE))
def test_an_unloadable_lora_is_refused_and_leaves_nothing(studio, name):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    data, words = UNLOADABLE[name]
    job = _upload(client, name, data)
    assert job["status"] == "failed", job
    assert job["error"].startswith(name) and words in job["error"], job["error"]
    assert not list(space.loras.glob("*.safetensors"))
    assert client.get("/api/library").get_json()["loras"] == []


def test_a_whole_lora_in_half_precision_still_goes_in(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    data = encode({f"{LAYER}.lora_A.weight": np.ones((4, 64), np.float32),
                   f"{LAYER}.lora_B.weight": np.ones((64, 4), np.float32),
                   f"{LAYER}.alpha": np.array(4.0, np.float32)}, "BF16", {})
    job = _upload(client, "half.safetensors", data)
    assert job["status"] == "completed", job
    assert (space.loras / "half.safetensors").read_bytes() == data


def test_one_from_comfyuis_loras_is_not_added_either(studio):
    space = studio.config["STUDIO_WORKSPACE"]
    comfy = space.root / "ComfyUI" / "models" / "loras"
    comfy.mkdir(parents=True)
    (comfy / "only-a.safetensors").write_bytes(UNLOADABLE["only-a.safetensors"][0])
    refused = studio.test_client().post("/api/library/comfyui/only-a.safetensors/add")
    assert refused.status_code == 422 and "has no lora_B of its lora_A's rank" in refused.get_json()["error"]
    assert not list(space.loras.glob("*.safetensors")) if space.loras.is_dir() else True
