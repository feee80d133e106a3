"""A LoRA file cut short (a browser download that stopped half-way, then uploaded; a copy into the library by hand
that did not finish) has a whole header and only part of its tensors. Only the header was read, so it was added to
the library as "rank 32" and its card offered Try it and Train further; safetensors, and so ComfyUI, refuse to load
it. It is refused now with a sentence that says it is cut short, and a cut-short file already in the library says so
on its card."""

from __future__ import annotations

import numpy as np
import pytest

import trainer
from tests.test_library_upload import _send
from tests.test_lora_import import wait_import
from trainer.lora_file import CutShort, read_header, zimage_lora_rank
from trainer.lora_resize import encode


@pytest.fixture
def studio(make_settings):
    return trainer.create_app(make_settings(STUDIO_DEMO=1, UPLOAD_CHUNK_MB=1, MAX_UPLOAD_MB=3))


def _lora() -> bytes:
    return encode({"diffusion_model.layers.0.attention.to_q.lora_A.weight": np.ones((4, 64), np.float32),
                   "diffusion_model.layers.0.attention.to_q.lora_B.weight": np.ones((64, 4), np.float32)}, "F32", {})


def test_a_whole_file_reads_and_a_cut_short_one_is_named_so(tmp_path):
    data = _lora()
    (tmp_path / "whole.safetensors").write_bytes(data)
    assert zimage_lora_rank(tmp_path / "whole.safetensors", "whole") == 4
    (tmp_path / "half.safetensors").write_bytes(data[:-300])
    with pytest.raises(CutShort, match="cut short"):
        read_header(tmp_path / "half.safetensors")
    with pytest.raises(CutShort, match=r"^My style\.safetensors is cut short or damaged: "):  # as the user named it
        zimage_lora_rank(tmp_path / "half.safetensors", "My style.safetensors")


def test_an_upload_cut_short_is_refused_and_leaves_nothing(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    sid = _send(client, "half.safetensors", _lora()[:-300])
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "failed", job
    assert job["error"].startswith("half.safetensors is cut short")
    assert not list(space.loras.glob("*.safetensors"))


def test_a_cut_short_file_in_the_library_says_so_on_its_card(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    (space.loras / "copied.safetensors").write_bytes(_lora()[:-300])  # a copy by hand that did not finish
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == "copied.safetensors")
    assert "cut short" in (card["refused"] or "")
    (space.loras / "whole.safetensors").write_bytes(_lora())
    merge = client.post("/api/library/merge", json={"files": [{"file": "whole.safetensors"},
                                                              {"file": "copied.safetensors"}]})
    assert merge.status_code == 422 and "cut short" in merge.get_json()["error"]
