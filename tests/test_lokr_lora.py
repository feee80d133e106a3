"""A LyCORIS LoKr as a LoRA: each layer's best LoRA at a rank through its factors' SVDs (never the full matrix), what
it keeps said exactly before and after; the copy renders as the LoKr does on the tiny transformer; a merge takes
LoKrs at a rank and measures what it keeps against the true sum; the library's endpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.test_lora_merge import output_with
from trainer.lokr_lora import (
    as_lora,
    kron_inner,
    kron_lora,
    kron_lowrank_inner,
    lora_options,
    lora_spectra,
    lowrank_inner,
)
from trainer.lora_file import LoraFileError, read_header
from trainer.lora_merge import merge
from trainer.lora_resize import encode, kept_at, read_tensors

LAYER = "diffusion_model.layers.{}.attention.to_q"


def _best(full: np.ndarray, rank: int) -> tuple[np.ndarray, float]:
    u, s, vt = np.linalg.svd(full)
    return (u[:, :rank] * s[:rank]) @ vt[:rank], float(np.sqrt((s[:rank] ** 2).sum() / (s ** 2).sum()))


def _lokr(path, seed=0, w1=(4, 4), w2=(16, 12), layers=(0, 1), split_w2=None, alpha=None, dtype="F32"):
    """A random LoKr file (w2 whole, or as w2_a · w2_b of rank `split_w2` with `alpha`); returns each layer's full
    change."""
    rng = np.random.default_rng(seed)
    tensors, changes = {}, {}
    for i in layers:
        key = LAYER.format(i)
        first = rng.normal(size=w1).astype(np.float32)
        # a spectrum that falls off, as a trained factor's does
        second = (rng.normal(size=w2) @ np.diag(0.7 ** np.arange(w2[1]))).astype(np.float32)
        tensors[f"{key}.lokr_w1"] = first
        scale = 1.0
        if split_w2:
            a = rng.normal(size=(w2[0], split_w2)).astype(np.float32)
            b = rng.normal(size=(split_w2, w2[1])).astype(np.float32)
            tensors[f"{key}.lokr_w2_a"], tensors[f"{key}.lokr_w2_b"] = a, b
            second = a @ b
            if alpha is not None:
                tensors[f"{key}.alpha"] = np.array(alpha, np.float32)
                scale = alpha / split_w2
        else:
            tensors[f"{key}.lokr_w2"] = second
        changes[i] = scale * np.kron(first.astype(np.float64), second.astype(np.float64))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(tensors, dtype, {"network": "lokr", "lokr_factor": "4", "trigger_word": "mycat",
                                              "ss_network_module": "lycoris.kohya"}))
    return changes


def _lora_change(tensors: dict, i: int) -> np.ndarray:
    key = LAYER.format(i)
    return tensors[f"{key}.lora_B.weight"].astype(np.float64) @ tensors[f"{key}.lora_A.weight"]


def test_a_layer_s_best_lora_comes_from_its_factors_svds():
    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(size=(4, 6)), rng.normal(size=(8, 5)) @ np.diag([5, 3, 1, 0.5, 0.1])
    full = np.kron(w1, w2)
    for rank in (1, 3, 10, 20):
        down, up, kept, whole = kron_lora(w1, w2, rank)
        best, share = _best(full, rank)
        assert down.shape == (rank, 30) and up.shape == (32, rank)
        np.testing.assert_allclose(up @ down, best, atol=2e-5)
        assert (kept / whole) ** 0.5 == pytest.approx(share, rel=1e-6)
    down, up, kept, whole = kron_lora(w1, w2, 24)  # more than its 20 directions: exact, zero-padded to the rank
    np.testing.assert_allclose(up @ down, full, atol=2e-5)
    assert down.shape == (24, 30) and not down[20:].any() and kept == pytest.approx(whole)


def test_the_inner_products_need_no_full_matrix():
    rng = np.random.default_rng(2)
    w1, w2, x1, x2 = (rng.normal(size=shape) for shape in ((4, 6), (8, 5), (4, 6), (8, 5)))
    up, down, up2, down2 = (rng.normal(size=shape) for shape in ((32, 3), (3, 30), (32, 2), (2, 30)))
    full = np.kron(w1, w2)
    assert kron_lowrank_inner(w1, w2, up, down) == pytest.approx((full * (up @ down)).sum())
    assert lowrank_inner(up, down, up2, down2) == pytest.approx(((up @ down) * (up2 @ down2)).sum())
    assert kron_inner((w1, w2), (x1, x2)) == pytest.approx((full * np.kron(x1, x2)).sum())
    with pytest.raises(LoraFileError, match="Two LoKrs of different factors"):
        kron_inner((w1, w2), (rng.normal(size=(2, 3)), rng.normal(size=(16, 10))))


@pytest.mark.parametrize("split, alpha, dtype", [(None, None, "F32"), (6, 3.0, "F32"), (None, None, "BF16")])
def test_a_lokr_file_becomes_a_lora_file_saying_what_it_keeps(tmp_path, split, alpha, dtype):
    source = tmp_path / "kron.safetensors"
    changes = _lokr(source, split_w2=split, alpha=alpha, dtype=dtype)
    made = as_lora(source, 8, tmp_path / "kron-lora-r8.safetensors")
    header, out = read_tensors(made.path)
    kept, whole = 0.0, 0.0
    for i, full in changes.items():
        best, _share = _best(full, 8)
        tolerance = 2e-2 * np.abs(full).max() if dtype == "BF16" else 1e-4 * np.abs(full).max()
        np.testing.assert_allclose(_lora_change(out, i), best, atol=tolerance)
        s = np.linalg.svd(full, compute_uv=False)
        kept, whole = kept + (s[:8] ** 2).sum(), whole + (s ** 2).sum()
    assert made.kept == pytest.approx((kept / whole) ** 0.5, rel=1e-3 if dtype == "BF16" else 1e-6)
    assert 0.5 < made.kept < 1 and made.size == made.path.stat().st_size
    assert not [key for key in out if ".lokr_" in key or key.endswith(".alpha")]
    assert {info["dtype"] for key, info in header.items() if key != "__metadata__"} == {dtype}
    meta = header["__metadata__"]
    assert (meta["lokr_source"], meta["lora_rank"], meta["ss_network_module"]) == ("kron.safetensors", "8",
                                                                                    "networks.lora")
    assert "network" not in meta and "lokr_factor" not in meta and meta["trigger_word"] == "mycat"
    assert float(meta["lokr_kept"]) == pytest.approx(made.kept, abs=1e-4)
    # what the menu says before a copy is made is what the copy keeps
    assert kept_at(lora_spectra("kron.safetensors", read_tensors(source)[1]), 8) == pytest.approx(made.kept,
                                                                                                   rel=1e-3)


def test_the_menu_offers_ranks_up_to_the_layers_and_knows_the_sizes(tmp_path):
    source = tmp_path / "kron.safetensors"
    _lokr(source, w1=(8, 8), w2=(16, 16))  # 128 x 128 layers: every rank of the menu
    options = lora_options(read_header(source), source.stat().st_size)
    assert [o["rank"] for o in options] == [128, 64, 32, 16]
    made = as_lora(source, 32, tmp_path / "copy.safetensors")
    near = next(o["bytes"] for o in options if o["rank"] == 32)
    assert abs(near - made.size) < 2048  # the same numbers; only the header's text differs
    _lokr(source)  # 64 x 48 layers: at most rank 48, so 32 and 16
    assert [o["rank"] for o in lora_options(read_header(source), source.stat().st_size)] == [32, 16]
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(encode({f"{LAYER.format(0)}.lora_A.weight": np.ones((2, 8), np.float32),
                             f"{LAYER.format(0)}.lora_B.weight": np.ones((8, 2), np.float32)}, "F32", {}))
    assert lora_options(read_header(lora), lora.stat().st_size) == []
    with pytest.raises(LoraFileError, match="is a LoRA already"):
        as_lora(lora, 2, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_a_full_rank_copy_renders_as_the_lokr_does(tmp_path, demo_paths):
    """On the tiny transformer, through the studio's own file reader (Try it's): the LoRA copy at the layers' full rank
    gives the LoKr's output, so the Kronecker layout is read the way the LoKr loader reads it."""
    from trainer.engine import model as zmodel

    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    rng = np.random.default_rng(3)
    tensors = {}
    for module in ("layers.0.attention.to_q", "layers.1.attention.to_out.0"):  # 64 x 64: 4x4 ⊗ 16x16
        tensors[f"diffusion_model.{module}.lokr_w1"] = rng.normal(0, 0.3, (4, 4)).astype(np.float32)
        tensors[f"diffusion_model.{module}.lokr_w2"] = rng.normal(0, 0.03, (16, 16)).astype(np.float32)
    (tmp_path / "kron.safetensors").write_bytes(encode(tensors, "F32", {}))
    made = as_lora(tmp_path / "kron.safetensors", 64, tmp_path / "copy.safetensors")
    assert made.kept == pytest.approx(1.0)
    kron, copy = (zmodel.load_adapter_file(tmp_path / f"{n}.safetensors", n) for n in ("kron", "copy"))
    by_lokr = output_with(transformer, (kron, 0.8))
    assert not torch.allclose(by_lokr, output_with(transformer), atol=1e-3)
    torch.testing.assert_close(output_with(transformer, (copy, 0.8)), by_lokr, rtol=1e-4, atol=1e-5)

def test_a_merge_takes_a_lokr_at_a_rank_and_measures_against_the_true_sum(tmp_path):
    kron = _lokr(tmp_path / "kron.safetensors", w2=(16, 12), layers=(0,))
    rng = np.random.default_rng(4)
    lora = {f"{LAYER.format(i)}.lora_A.weight": rng.normal(size=(3, 48)).astype(np.float32) for i in (0, 1)}
    lora.update({f"{LAYER.format(i)}.lora_B.weight": rng.normal(size=(64, 3)).astype(np.float32) for i in (0, 1)})
    (tmp_path / "cat.safetensors").write_bytes(encode(lora, "F32", {}))
    sources = [(tmp_path / "cat.safetensors", 0.5), (tmp_path / "kron.safetensors", 1.2)]
    with pytest.raises(LoraFileError, match="kron.safetensors is a LyCORIS LoKr: .* needs a rank"):
        merge(sources, tmp_path / "x.safetensors")
    made = merge(sources, tmp_path / "mix.safetensors", rank=6)
    _header, out = read_tensors(made.path)
    true = {0: 0.5 * _lora_change(lora, 0) + 1.2 * kron[0], 1: 0.5 * _lora_change(lora, 1)}
    error = sum(((true[i] - _lora_change(out, i)) ** 2).sum() for i in true)
    whole = sum((true[i] ** 2).sum() for i in true)
    assert made.kept == pytest.approx(np.sqrt(1 - error / whole), rel=1e-5)
    assert 0.5 < made.kept < 1 and made.rank == 6
    np.testing.assert_allclose(_lora_change(out, 1), true[1], atol=1e-4)  # the LoRA's own layer: exact
    wide = merge(sources, tmp_path / "wide.safetensors", rank=64)  # room for every direction: exact
    assert wide.kept == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(_lora_change(read_tensors(wide.path)[1], 0), true[0], atol=1e-3)
    broken = read_tensors(tmp_path / "kron.safetensors")[1]
    broken[f"{LAYER.format(0)}.lokr_w2"][0, 0] = np.nan
    (tmp_path / "nan.safetensors").write_bytes(encode(broken, "F32", {}))
    with pytest.raises(LoraFileError, match="cannot be merged"):
        merge([sources[0], (tmp_path / "nan.safetensors", 1.0)], tmp_path / "x.safetensors", rank=6)
    broken[f"{LAYER.format(0)}.lokr_w1"][1, 1] = np.inf  # in the smaller factor too
    (tmp_path / "nan.safetensors").write_bytes(encode(broken, "F32", {}))
    with pytest.raises(LoraFileError, match=r"cannot be merged \(its weights are not finite\)"):
        merge([sources[0], (tmp_path / "nan.safetensors", 1.0)], tmp_path / "x.safetensors", rank=6)
    with pytest.raises(LoraFileError, match=r"cannot be written as a LoRA \(its weights are not finite\)"):
        as_lora(tmp_path / "nan.safetensors", 4, tmp_path / "x.safetensors")
    _lokr(tmp_path / "other.safetensors", w1=(2, 2), w2=(32, 24), layers=(0,))  # the same layer split otherwise
    with pytest.raises(LoraFileError, match="Two LoKrs of different factors"):
        merge([(tmp_path / "kron.safetensors", 1.0), (tmp_path / "other.safetensors", 1.0)],
              tmp_path / "x.safetensors", rank=8)
    assert not (tmp_path / "x.safetensors").exists()


@pytest.fixture
def library(trainer_app):
    space = trainer_app.config["STUDIO_WORKSPACE"]
    _lokr(space.loras / "kron.safetensors", w1=(4, 4), w2=(16, 16))  # the tiny model's 64 x 64 attention
    rng = np.random.default_rng(5)
    space.loras.joinpath("cat.safetensors").write_bytes(encode(
        {f"{LAYER.format(0)}.lora_A.weight": rng.normal(size=(2, 64)).astype(np.float32),
         f"{LAYER.format(0)}.lora_B.weight": rng.normal(size=(64, 2)).astype(np.float32)}, "F32", {}))
    return space


def test_the_library_saves_a_lokr_as_a_lora(library, trainer_client):
    (library.root / "ComfyUI").mkdir()  # installed: the copy goes to its loras too
    cards = {c["file"]: c for c in trainer_client.get("/api/library").get_json()["loras"]}
    assert [o["rank"] for o in cards["kron.safetensors"]["as_lora"]] == [64, 32, 16]
    assert cards["cat.safetensors"]["as_lora"] == []
    choices = trainer_client.get("/api/library/files/kron.safetensors/as-lora")
    assert choices.status_code == 200
    kept = {o["rank"]: o["kept"] for o in choices.get_json()["options"]}
    assert kept[64] == pytest.approx(1.0) and 0 < kept[16] < kept[32] < 1
    made = trainer_client.post("/api/library/files/kron.safetensors/as-lora", json={"rank": 32})
    assert made.status_code == 201, made.get_json()
    answer = made.get_json()
    assert (answer["file"], answer["rank"]) == ("kron-lora-r32.safetensors", 32)
    assert answer["kept"] == pytest.approx(kept[32], abs=2e-4)
    path = library.loras / "kron-lora-r32.safetensors"
    assert (library.comfyui_loras / path.name).read_bytes() == path.read_bytes()
    card = {c["file"]: c for c in trainer_client.get("/api/library").get_json()["loras"]}[path.name]
    assert (card["lokr"], card["rank"], card["metadata"]["lokr_source"]) == (False, 32, "kron.safetensors")
    again = trainer_client.post("/api/library/files/kron.safetensors/as-lora", json={"rank": 32})
    assert again.status_code == 409 and "delete it first" in again.get_json()["error"]


@pytest.mark.parametrize("url, body, status, words", [
    ("/api/library/files/cat.safetensors/as-lora", {"rank": 2}, 422, "is a LoRA already"),
    ("/api/library/files/kron.safetensors/as-lora", {"rank": "8"}, 422, "'rank' must be a whole number"),
    ("/api/library/files/kron.safetensors/as-lora", {"rank": 0}, 422, "rank from 1"),
    ("/api/library/files/nope.safetensors/as-lora", {"rank": 8}, 404, "no file"),
])
def test_a_bad_save_as_a_lora_says_why_and_writes_nothing(library, trainer_client, url, body, status, words):
    response = trainer_client.post(url, json=body)
    assert response.status_code == status, response.get_json()
    assert words in response.get_json()["error"]
    assert sorted(p.name for p in library.loras.glob("*.safetensors")) == ["cat.safetensors", "kron.safetensors"]
    assert trainer_client.get("/api/library/files/cat.safetensors/as-lora").status_code == 422


def test_the_library_merges_a_lokr_with_a_lora_at_a_rank(library, trainer_client):
    body = {"files": [{"file": "cat.safetensors", "strength": 1.0}, {"file": "kron.safetensors", "strength": 0.7}]}
    exact = trainer_client.post("/api/library/merge", json=body)
    assert exact.status_code == 422 and "needs a rank" in exact.get_json()["error"]
    made = trainer_client.post("/api/library/merge", json={**body, "rank": 16})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["rank"] == 16 and 0 < made.get_json()["kept"] < 1
    meta = read_header(library.loras / made.get_json()["file"])["__metadata__"]
    assert [f["file"] for f in json.loads(meta["merged_from"])] == ["cat.safetensors", "kron.safetensors"]


def test_a_lora_copy_on_a_full_disk_says_so_and_leaves_nothing_behind(library, trainer_client, monkeypatch):
    import errno
    import os

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    response = trainer_client.post("/api/library/files/kron.safetensors/as-lora", json={"rank": 16})
    assert response.status_code == 507 and response.get_json()["error"].startswith("The disk is full")
    assert sorted(p.name for p in library.loras.iterdir() if p.is_file()) == ["cat.safetensors", "kron.safetensors"]
    monkeypatch.undo()
    assert trainer_client.post("/api/library/files/kron.safetensors/as-lora", json={"rank": 16}).status_code == 201
