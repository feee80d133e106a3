"""Merge LoRAs into one: exact at the sum of their ranks (each at its strength, alpha folded in), or at a lower rank
keeping each layer's largest directions; a merged file applies as the LoRAs chained do; the library's endpoint writes
it beside them (and into ComfyUI's loras) and refuses what it cannot merge, with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainer.lora_file import LoraFileError, check_start_lora
from trainer.lora_merge import merge
from trainer.lora_resize import encode, read_tensors

LAYER = "layers.{}.attention.to_q"


def _lora(path, rank: int, layers=(0, 1), alpha=None, prefix="diffusion_model.", seed=0, size=(48, 64),
          trigger=None):
    """A random LoRA of `rank` on `layers` (in 48, out 64 by default)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in layers:
        tensors[f"{prefix}{LAYER.format(i)}.lora_A.weight"] = rng.normal(size=(rank, size[0])).astype(np.float32)
        tensors[f"{prefix}{LAYER.format(i)}.lora_B.weight"] = rng.normal(size=(size[1], rank)).astype(np.float32)
        if alpha is not None:
            tensors[f"{prefix}{LAYER.format(i)}.alpha"] = np.array(alpha, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(tensors, "F32", {"trigger_word": trigger} if trigger else {}))
    return tensors


def _change(tensors, i, prefix="diffusion_model.", scale=1.0):
    key = f"{prefix}{LAYER.format(i)}"
    return scale * tensors[f"{key}.lora_B.weight"] @ tensors[f"{key}.lora_A.weight"]


def test_the_merge_is_exact_at_the_sum_of_the_ranks(tmp_path):
    a = _lora(tmp_path / "a.safetensors", 2)
    b = _lora(tmp_path / "b.safetensors", 3, layers=(0,), alpha=1.5, prefix="transformer.", seed=1)  # scale 0.5
    made = merge([(tmp_path / "a.safetensors", 1.0), (tmp_path / "b.safetensors", -0.8)], tmp_path / "ab.safetensors")
    assert (made.rank, made.kept) == (5, 1.0) and made.size == made.path.stat().st_size
    header, out = read_tensors(made.path)
    assert np.allclose(_change(out, 0), _change(a, 0) - 0.8 * _change(b, 0, "transformer.", 0.5), atol=1e-4)
    assert np.allclose(_change(out, 1), _change(a, 1), atol=1e-5)  # a layer only one file has: from it alone
    assert out[f"diffusion_model.{LAYER.format(1)}.lora_A.weight"].shape == (5, 48)  # zero-padded to one rank
    check_start_lora(made.path, 5, "all")  # so a job can go on from it
    assert not [key for key in out if key.endswith(".alpha") or key.startswith("transformer.")]
    meta = header["__metadata__"]
    assert json.loads(meta["merged_from"]) == [{"file": "a.safetensors", "strength": 1.0},
                                               {"file": "b.safetensors", "strength": -0.8}]
    assert meta["lora_rank"] == "5" and meta["merge_kept"] == "1.0000"


def test_a_lower_rank_keeps_the_largest_directions_and_says_how_much(tmp_path):
    a = _lora(tmp_path / "a.safetensors", 4, layers=(0,))
    b = _lora(tmp_path / "b.safetensors", 4, layers=(0,), seed=1)
    made = merge([(tmp_path / "a.safetensors", 1.0), (tmp_path / "b.safetensors", 1.0)], tmp_path / "ab.safetensors",
                 rank=3)
    whole = _change(a, 0) + _change(b, 0)
    values = np.linalg.svd(whole, compute_uv=False)
    assert made.rank == 3 and made.kept == pytest.approx(np.sqrt((values[:3] ** 2).sum() / (values ** 2).sum()),
                                                         rel=1e-5)
    _header, out = read_tensors(made.path)
    assert np.linalg.norm(whole - _change(out, 0)) == pytest.approx(np.sqrt((values[3:] ** 2).sum()), rel=1e-4)
    wide = merge([(tmp_path / "a.safetensors", 1.0), (tmp_path / "b.safetensors", 1.0)], tmp_path / "w.safetensors",
                 rank=16)  # more than the sum: exact
    assert (wide.rank, wide.kept) == (8, pytest.approx(1.0))


def test_what_cannot_be_merged_says_why(tmp_path):
    _lora(tmp_path / "a.safetensors", 2)
    _lora(tmp_path / "other.safetensors", 2, size=(48, 96))  # another model's shapes
    with pytest.raises(LoraFileError, match="they are LoRAs of different models"):
        merge([(tmp_path / "a.safetensors", 1.0), (tmp_path / "other.safetensors", 1.0)], tmp_path / "x.safetensors")
    kron = tmp_path / "kron.safetensors"
    kron.write_bytes(encode({f"diffusion_model.{LAYER.format(0)}.lokr_w1": np.ones((2, 2), np.float32),
                             f"diffusion_model.{LAYER.format(0)}.lokr_w2": np.ones((32, 24), np.float32)}, "F32", {}))
    with pytest.raises(LoraFileError, match="kron.safetensors is a LyCORIS LoKr: its change has no exact LoRA form"):
        merge([(tmp_path / "a.safetensors", 1.0), (kron, 1.0)], tmp_path / "x.safetensors")
    nan = _lora(tmp_path / "nan.safetensors", 2)
    nan[f"diffusion_model.{LAYER.format(1)}.lora_B.weight"][3, 1] = np.inf
    (tmp_path / "nan.safetensors").write_bytes(encode(nan, "F32", {}))
    with pytest.raises(LoraFileError, match=r"layers\.1\.attention\.to_q cannot be merged \(its weights are not"):
        merge([(tmp_path / "a.safetensors", 1.0), (tmp_path / "nan.safetensors", 1.0)], tmp_path / "x.safetensors")
    with pytest.raises(LoraFileError, match="2 to 4 LoRAs"):
        merge([(tmp_path / "a.safetensors", 1.0)], tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_a_merged_lora_applies_as_the_two_chained(tmp_path, demo_paths):
    """On the tiny transformer: the merged file's hooks give what the two files' hooks give together (With)."""
    from trainer.engine import model as zmodel

    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    sizes = {"layers.0.attention.to_q": (64, 64), "layers.1.feed_forward.w1": (64, 170)}
    for name, seed in (("a", 0), ("b", 1)):
        rng = np.random.default_rng(seed)
        tensors = {}
        for module, (inp, out) in sizes.items():
            tensors[f"diffusion_model.{module}.lora_A.weight"] = rng.normal(0, 0.1, (4, inp)).astype(np.float32)
            tensors[f"diffusion_model.{module}.lora_B.weight"] = rng.normal(0, 0.1, (out, 4)).astype(np.float32)
        (tmp_path / f"{name}.safetensors").write_bytes(encode(tensors, "F32", {}))
    merge([(tmp_path / "a.safetensors", 0.7), (tmp_path / "b.safetensors", 1.3)], tmp_path / "ab.safetensors")
    a, b, ab = (zmodel.load_adapter_file(tmp_path / f"{n}.safetensors", n) for n in ("a", "b", "ab"))
    chained = output_with(transformer, (a, 0.7), (b, 1.3))
    assert not torch.allclose(chained, output_with(transformer), atol=1e-3)
    torch.testing.assert_close(output_with(transformer, (ab, 1.0)), chained, rtol=1e-4, atol=1e-5)


def output_with(transformer, *adapters) -> torch.Tensor:
    """The tiny transformer's output on one fixed input with each (adapter, strength) of `adapters` applied."""
    from contextlib import ExitStack

    from trainer.engine import model as zmodel

    g = torch.Generator().manual_seed(0)
    inputs = ([torch.randn(16, 1, 8, 8, generator=g)], torch.tensor([0.5]), [torch.randn(5, 32, generator=g)])
    with torch.no_grad(), ExitStack() as stack:
        for adapter, strength in adapters:
            stack.enter_context(zmodel.adapter_applied(transformer, adapter, strength))
        return transformer(*inputs, return_dict=False)[0][0]

@pytest.fixture
def library(trainer_app):
    space = trainer_app.config["STUDIO_WORKSPACE"]
    _lora(space.loras / "cat.safetensors", 2, trigger="mycat")
    _lora(space.loras / "style.safetensors", 3, seed=1, trigger="inkstyle")
    return space


def test_the_library_merges_into_a_file_of_its_own(library, trainer_client):
    (library.root / "ComfyUI").mkdir()  # installed: the merged file goes to its loras too
    body = {"files": [{"file": "cat.safetensors", "strength": 1.0}, {"file": "style.safetensors", "strength": 0.6}]}
    made = trainer_client.post("/api/library/merge", json=body)
    assert made.status_code == 201, made.get_json()
    answer = made.get_json()
    assert (answer["file"], answer["rank"], answer["kept"]) == ("cat-style.safetensors", 5, 1.0)
    path = library.loras / "cat-style.safetensors"
    assert (library.comfyui_loras / path.name).read_bytes() == path.read_bytes()
    cards = {c["file"]: c for c in trainer_client.get("/api/library").get_json()["loras"]}
    meta = cards[path.name]["metadata"]
    assert cards[path.name]["rank"] == 5 and json.loads(meta["trigger_words"]) == ["mycat", "inkstyle"]
    assert meta["modelspec.trigger_phrase"] == "mycat, inkstyle" and "merged_from" in meta
    again = trainer_client.post("/api/library/merge", json=body)
    assert again.status_code == 409 and "pick another name" in again.get_json()["error"]
    spaced = trainer_client.post("/api/library/merge", json={**body, "name": " my merged  cat "})  # as typed
    assert spaced.status_code == 201 and spaced.get_json()["file"] == "my-merged-cat.safetensors"
    smaller = trainer_client.post("/api/library/merge", json={**body, "name": "cat-style-r2", "rank": 2})
    assert smaller.status_code == 201 and 0 < smaller.get_json()["kept"] < 1


@pytest.mark.parametrize("change, status, words", [
    ({"files": [{"file": "cat.safetensors"}]}, 422, "2 to 4 LoRAs"),
    ({"files": [{"file": "cat.safetensors"}, {"file": "cat.safetensors"}]}, 422, "listed twice"),
    ({"files": [{"file": "cat.safetensors"}, {"file": "nope.safetensors"}]}, 404, "no LoRA 'nope.safetensors'"),
    ({"files": [{"file": "cat.safetensors", "strength": 0}, {"file": "style.safetensors"}]}, 422, "not 0"),
    ({"files": [{"file": "cat.safetensors", "strength": True}, {"file": "style.safetensors"}]}, 422, "not 0"),
    ({"files": [{"file": "cat.safetensors", "strength": 7}, {"file": "style.safetensors"}]}, 422,
     "cat.safetensors: its strength must be a number from -2 to 2, and not 0 (it is 7)"),
    ({"files": [{"file": "cat.safetensors"}, {"file": "style.safetensors"}], "rank": 0}, 422, "'rank'"),
    ({"files": [{"file": "cat.safetensors"}, {"file": "style.safetensors"}], "name": "../x"}, 422, "'name'"),
    ({"files": [{"file": "cat.safetensors"}, {"file": "../../etc/passwd"}]}, 400, ""),
])
def test_a_bad_merge_request_says_what_to_change(library, trainer_client, change, status, words):
    response = trainer_client.post("/api/library/merge", json=change)
    assert response.status_code == status, response.get_json()
    assert words in response.get_json()["error"]
    assert sorted(p.name for p in library.loras.glob("*.safetensors")) == ["cat.safetensors", "style.safetensors"]


def test_a_merge_on_a_full_disk_says_so_and_leaves_nothing_behind(library, trainer_client, monkeypatch):
    import errno
    import os

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    body = {"files": [{"file": "cat.safetensors"}, {"file": "style.safetensors"}]}
    response = trainer_client.post("/api/library/merge", json=body)
    assert response.status_code == 507 and response.get_json()["error"].startswith("The disk is full")
    assert sorted(p.name for p in library.loras.iterdir() if p.is_file()) == ["cat.safetensors", "style.safetensors"]
    monkeypatch.undo()
    assert trainer_client.post("/api/library/merge", json=body).status_code == 201  # space again: it works
