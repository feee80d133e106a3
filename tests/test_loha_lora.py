"""A LyCORIS LoHa brought to a LoRA on its way into the library: each layer's change scale·(w1_a·w1_b) ∘ (w2_a·w2_b)
exactly as a LoRA of rank dim² (dim 16 and below), or through its largest directions above that with the share kept
said; refiners and the original checkpoint's fused qkv too; 16-bit files stay 16-bit without losing small values;
what is not a LoHa of a Linear is refused by name (through "Add a LoRA from a link": tests/test_lora_import.py)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import loha_lora
from trainer.lora_file import LoraFileError, lora_ranks, read_header
from trainer.lora_formats import convert, converted_if_needed, needs_converting
from trainer.lora_resize import encode, read_tensors

DIM = 32
SHAPES = {"layers.0.attention.to_q": (DIM, DIM), "layers.0.feed_forward.w2": (DIM, 2 * DIM),
          "noise_refiner.0.feed_forward.w1": (2 * DIM, DIM), "layers.1.adaLN_modulation.0": (4 * DIM, 16)}
FACTORS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")


def _loha(rng, shapes=SHAPES, dim: int = 3, alpha: float | None = 1.5, size: float = 1.0, prefix: str = "lora_unet_"):
    """(tensors of a LoHa in kohya's names, {module: its change as ComfyUI computes it}); `size`: the typical value
    of the _a factors (LyCORIS starts them at 0.1 or 0 and the _b factors at 1)."""
    tensors, changes = {}, {}
    for module, (out, inner) in shapes.items():
        factors = [rng.standard_normal(shape).astype(np.float32) * scale
                   for shape, scale in (((out, dim), size), ((dim, inner), 1.0)) * 2]
        key = prefix + module.replace(".", "_")
        tensors.update({f"{key}.{part}": value for part, value in zip(FACTORS, factors, strict=True)})
        if alpha is not None:
            tensors[f"{key}.alpha"] = np.array(alpha, np.float32)
        w1a, w1b, w2a, w2b = (f.astype(np.float64) for f in factors)
        changes[module] = (w1a @ w1b) * (w2a @ w2b) * (alpha / dim if alpha is not None else 1.0)
    return tensors, changes


def _changes(path) -> dict[str, np.ndarray]:
    _header, tensors = read_tensors(path)
    return {key.removeprefix("diffusion_model.").removesuffix(".lora_A.weight"):
            tensors[key.replace(".lora_A.", ".lora_B.")].astype(np.float64) @ down
            for key, down in tensors.items() if key.endswith(".lora_A.weight")}


def test_a_loha_becomes_a_lora_of_rank_dim_squared_with_exactly_its_change(tmp_path):
    rng = np.random.default_rng(0)
    tensors, changes = _loha(rng)
    source = tmp_path / "loha.safetensors"
    source.write_bytes(encode(tensors, "F32", {"ss_network_module": "lycoris.kohya", "ss_network_dim": "3",
                                               "ss_network_args": '{"algo": "loha"}', "modelspec.title": "Ink"}))
    assert needs_converting(read_header(source))
    seen = []
    made = convert(source, tmp_path / "ours.safetensors", progress=lambda done, total: seen.append((done, total)))
    assert made.notes == ["kohya's key names", "a LyCORIS LoHa of dim 3, exactly"] and made.modules == len(SHAPES)
    assert seen == [(n, len(SHAPES)) for n in range(len(SHAPES))]
    got = _changes(tmp_path / "ours.safetensors")
    assert set(got) == set(changes)  # the refiner's and adaLN's too
    for module, change in changes.items():
        np.testing.assert_allclose(got[module], change, rtol=1e-5, atol=1e-5 * np.abs(change).max())
    header = read_header(tmp_path / "ours.safetensors")
    assert set(lora_ranks(header).values()) == {9} and not needs_converting(header)
    meta = header["__metadata__"]
    assert meta["loha_kept"] == "1.0000" and meta["lora_rank"] == meta["ss_network_dim"] == "9"
    assert meta["ss_network_module"] == "networks.lora" and "ss_network_args" not in meta  # a LoRA's now
    assert meta["modelspec.title"] == "Ink"
    assert meta["converted_from"] == "kohya's key names, a LyCORIS LoHa of dim 3, exactly"
    assert not any(key.endswith(".alpha") for key in header)  # folded: scale 1, as this studio writes


def test_a_loha_without_alpha_is_read_at_scale_one_in_dotted_names(tmp_path):
    rng = np.random.default_rng(1)
    tensors, changes = _loha(rng, alpha=None, prefix="")
    dotted = {}
    for key, value in tensors.items():
        flat, part = key.split(".")
        module = next(m for m in SHAPES if m.replace(".", "_") == flat)
        dotted[f"diffusion_model.{module}.{part}"] = value
    path = tmp_path / "dotted.safetensors"
    path.write_bytes(encode(dotted, "F32", {}))
    assert converted_if_needed(path).notes == ["a LyCORIS LoHa of dim 3, exactly"]  # in place, as an import does
    for module, change in _changes(path).items():
        np.testing.assert_allclose(change, changes[module], rtol=1e-5, atol=1e-5 * np.abs(changes[module]).max())


@pytest.mark.parametrize("dtype, tolerance", [("BF16", 0.03), ("F16", 0.003)])
def test_a_16_bit_loha_stays_16_bit_and_keeps_its_small_values(tmp_path, dtype, tolerance):
    """_a factors of 0.003: their products (1e-5) would be below float16's normal range in B alone; each direction's
    column of B and row of A share the size, so nothing is lost to the file's precision."""
    rng = np.random.default_rng(2)
    tensors, _ = _loha(rng, size=0.003)
    path = tmp_path / "small.safetensors"
    path.write_bytes(encode(tensors, dtype, {}))
    _header, stored = read_tensors(path)  # the factors as the file holds them (rounded to its dtype)
    converted_if_needed(path)
    assert {info["dtype"] for key, info in read_header(path).items() if key != "__metadata__"} == {dtype}
    for module, change in _changes(path).items():
        key = "lora_unet_" + module.replace(".", "_")
        w1a, w1b, w2a, w2b = (stored[f"{key}.{part}"].astype(np.float64) for part in FACTORS)
        truth = (w1a @ w1b) * (w2a @ w2b) * 0.5
        assert np.linalg.norm(change - truth) <= tolerance * np.linalg.norm(truth)


def test_a_loha_above_the_largest_exact_rank_keeps_its_largest_directions_and_says_how_much(tmp_path, monkeypatch):
    monkeypatch.setattr(loha_lora, "MAX_RANK", 5)  # dim 3 (rank 9) above it, as dim 32 (1,024) is above 256
    rng = np.random.default_rng(3)
    tensors, changes = _loha(rng)
    source = tmp_path / "big.safetensors"
    source.write_bytes(encode(tensors, "F32", {}))
    made = convert(source, tmp_path / "ours.safetensors")
    kept = whole = 0.0
    got = _changes(tmp_path / "ours.safetensors")
    for module, change in changes.items():
        u, s, vt = np.linalg.svd(change)
        best = (u[:, :5] * s[:5]) @ vt[:5]
        np.testing.assert_allclose(got[module], best, rtol=1e-4, atol=1e-4 * np.abs(change).max())
        kept, whole = kept + (s[:5] ** 2).sum(), whole + (s ** 2).sum()
    share = (kept / whole) ** 0.5
    meta = read_header(tmp_path / "ours.safetensors")["__metadata__"]
    assert abs(float(meta["loha_kept"]) - share) < 1e-4 and meta["lora_rank"] == "5"
    assert made.notes[-1] == f"a LyCORIS LoHa of dim 3, keeping {np.floor(share * 1000) / 10:g}% of its change"
    assert set(lora_ranks(read_header(tmp_path / "ours.safetensors")).values()) == {5}


def test_a_loha_of_the_original_checkpoints_fused_qkv_is_split_exactly(tmp_path):
    """The fused layer's rows are q's, k's and v's: w1_a's and w2_a's rows split the same way, so each of to_q, to_k
    and to_v gets its own exact change."""
    rng = np.random.default_rng(4)
    tensors, changes = _loha(rng, shapes={"layers.0.attention.qkv": (3 * DIM, DIM)}, prefix="diffusion_model.")
    tensors = {key.replace("diffusion_model.layers_0_attention_qkv", "diffusion_model.layers.0.attention.qkv"): value
               for key, value in tensors.items()}
    path = tmp_path / "comfy.safetensors"
    path.write_bytes(encode(tensors, "F32", {}))
    made = converted_if_needed(path)
    assert made.notes == ["a LyCORIS LoHa of dim 3, exactly", "the original checkpoint's fused qkv"]
    got, fused = _changes(path), changes["layers.0.attention.qkv"]
    for index, x in enumerate("qkv"):
        part = fused[index * DIM:(index + 1) * DIM]
        np.testing.assert_allclose(got[f"layers.0.attention.to_{x}"], part, rtol=1e-5, atol=1e-5 * np.abs(part).max())


@pytest.mark.parametrize("change, words", [
    (lambda t: t.pop("lora_unet_layers_0_attention_to_q.hada_w2_b"), "the LoHa layer layers.0.attention.to_q lacks "
                                                                     "hada_w2_b"),
    (lambda t: t.update({"lora_unet_layers_0_attention_to_q.hada_w2_a": np.ones((DIM, 2), np.float32)}),
     "is not a LoHa of a Linear"),
    (lambda t: t.update({"lora_unet_layers_0_attention_to_q.hada_w1_b": np.array(2.0, np.float32)}),
     "is not a LoHa of a Linear"),
    (lambda t: t["lora_unet_layers_0_feed_forward_w2.hada_w1_b"].__setitem__((0, 0), np.nan),
     "layers.0.feed_forward.w2 has NaN or infinite weights"),
    (lambda t: t.update({"lora_unet_layers_0_attention_to_q.hada_t1": np.ones((3, 3, 1, 1), np.float32)}),
     "This is a LyCORIS LoHa of convolutions"),
], ids=["half", "shapes", "scalar", "nan", "tucker"])
def test_what_is_not_a_loha_of_a_linear_is_refused_by_name_and_the_file_is_left(tmp_path, change, words):
    tensors, _ = _loha(np.random.default_rng(5))
    change(tensors)
    path = tmp_path / "bad.safetensors"
    data = encode(tensors, "F32", {})
    path.write_bytes(data)
    with pytest.raises(LoraFileError, match=words):
        converted_if_needed(path)
    assert path.read_bytes() == data
