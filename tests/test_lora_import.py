"""Add a LoRA to the library from a link: downloaded by the pod (a job of the job store), checked to be a LoRA of
Z-Image's layers, placed in the library and ComfyUI's loras under a free name; anything else is refused with a
sentence and leaves nothing behind."""

from __future__ import annotations

import time

import numpy as np
import pytest

import trainer
from tests.helpers import files_handler, serving
from tests.test_loha_lora import _loha
from trainer.lora_resize import encode

RANK = 4


def _lora(prefix: str = "diffusion_model.layers.0.attention.to_q", trigger: str = "zkw") -> bytes:
    return encode({f"{prefix}.lora_A.weight": np.ones((RANK, 16), np.float32),
                   f"{prefix}.lora_B.weight": np.ones((16, RANK), np.float32)}, "BF16", {"trigger_word": trigger})


OCTETS = "application/octet-stream"
FILES = {
    "/cat.safetensors": (OCTETS, {}, _lora()),
    "/api/download/models/123": (OCTETS, {"Content-Disposition": 'attachment; filename="Cat Style v2.safetensors"'},
                                 _lora(trigger="cstv2")),
    "/sdxl.safetensors": (OCTETS, {}, _lora("lora_unet_input_blocks.0.proj")),
    "/page": ("text/html", {}, b"<!doctype html><html><body>Download</body></html>"),
    "/ink-loha.safetensors": (OCTETS, {}, encode(_loha(np.random.default_rng(6), dim=4)[0], "BF16", {})),
}


@pytest.fixture(scope="module")
def lora_web():
    with serving(files_handler(FILES)) as url:
        yield url


@pytest.fixture
def lan(make_settings):
    """A trainer that may fetch from this machine (the stand-in web is on 127.0.0.1), with ComfyUI installed."""
    app = trainer.create_app(make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=1))
    (app.config["STUDIO_WORKSPACE"].root / "ComfyUI").mkdir()
    return app


def _import(client, url: str) -> dict:
    response = client.post("/api/library/import", json={"url": url})
    assert response.status_code == 202, response.get_json()
    return wait_import(client, response.get_json()["job"]["id"])


def wait_import(client, job_id: str) -> dict:
    """The library import job `job_id` once it ended (a link's or an upload's)."""
    deadline = time.monotonic() + 30
    while True:
        job = next(j for j in client.get("/api/library/imports").get_json()["imports"] if j["id"] == job_id)
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_a_lora_from_a_link_lands_in_the_library_and_comfyui(lan, lora_web):
    client, space = lan.test_client(), lan.config["STUDIO_WORKSPACE"]
    job = _import(client, f"{lora_web}/cat.safetensors")
    assert job["status"] == "completed", job
    assert job["message"] == f"Added cat.safetensors (rank {RANK}) to the library."
    assert (space.loras / "cat.safetensors").read_bytes() == FILES["/cat.safetensors"][2]
    assert (space.comfyui_loras / "cat.safetensors").is_file()
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == "cat.safetensors")
    assert card["rank"] == RANK and card["trigger_word"] == "zkw"
    # the same file again: no second copy
    again = _import(client, f"{lora_web}/cat.safetensors")
    assert again["message"] == (f"cat.safetensors is in the library already, as cat.safetensors (the same file, rank "
                                f"{RANK}): nothing was added.") and again["result"]["already"]
    assert sorted(p.name for p in space.loras.glob("*.safetensors")) == ["cat.safetensors"]
    # a download link named by the server (Civitai's): its name, made safe, and never that of ComfyUI's own file
    (space.comfyui_loras / "cat-style-v2.safetensors").write_bytes(b"ComfyUI's own")
    made = _import(client, f"{lora_web}/api/download/models/123")["result"]
    assert made["file"] == "Cat-Style-v2-2.safetensors" and not made["already"]
    assert (space.comfyui_loras / "cat-style-v2.safetensors").read_bytes() == b"ComfyUI's own"
    assert (space.comfyui_loras / "Cat-Style-v2-2.safetensors").is_file()
    assert not list((space.loras / ".incoming").iterdir())


def test_a_loha_from_a_link_lands_in_the_library_as_a_lora(lan, lora_web):
    client, space = lan.test_client(), lan.config["STUDIO_WORKSPACE"]
    job = _import(client, f"{lora_web}/ink-loha.safetensors")
    assert job["status"] == "completed", job
    assert job["message"] == ("Added ink-loha.safetensors (rank 16, converted from kohya's key names and a LyCORIS "
                              "LoHa of dim 4, exactly) to the library.")
    assert job["result"]["converted_from"][-1] == "a LyCORIS LoHa of dim 4, exactly"
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == "ink-loha.safetensors")
    assert card["rank"] == 16 and card["metadata"]["loha_kept"] == "1.0000"
    assert (space.comfyui_loras / "ink-loha.safetensors").is_file()


@pytest.mark.parametrize("path, words", [
    ("/sdxl.safetensors", "not a LoRA of Z-Image's layers (it has lora_unet_input_blocks.0.proj)"),
    ("/page", "is not a .safetensors file (or it is damaged or cut short). Use the link of the file itself"),
    ("/missing.safetensors", "answered 404"),
])
def test_what_is_not_a_lora_of_this_model_is_refused_and_leaves_nothing(lan, lora_web, path, words):
    client, space = lan.test_client(), lan.config["STUDIO_WORKSPACE"]
    job = _import(client, lora_web + path)
    assert job["status"] == "failed" and words in job["error"], job
    assert not list(space.loras.glob("*.safetensors")) and not list((space.loras / ".incoming").glob("*"))


def test_private_addresses_and_bad_links_are_refused_at_once(trainer_client, lora_web):
    refused = trainer_client.post("/api/library/import", json={"url": f"{lora_web}/cat.safetensors"})
    assert refused.status_code == 422 and "127.0.0.1" in refused.get_json()["error"]
    for body in ({}, {"url": "ftp://example.com/x.safetensors"}, {"url": 5}):
        assert trainer_client.post("/api/library/import", json=body).status_code == 422, body
