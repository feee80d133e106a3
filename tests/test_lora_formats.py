"""Other trainers' Z-Image LoRA files brought to this studio's key names: kohya's and musubi-tuner's underscored
names with lora_down/lora_up and alpha, the original checkpoint's fused qkv and `out`; the change each layer makes is
exactly the same after. OFT, DoRA and LyCORIS files of convolutions are refused with their name (a LoHa becomes a
LoRA: tests/test_loha_lora.py). Then the same through "Add a LoRA from a
link", down to a render of the converted file."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.lora_file import LoraFileError, lora_ranks, read_header
from trainer.lora_formats import convert, converted_if_needed, needs_converting
from trainer.lora_resize import encode, read_tensors

DIM, RANK = 32, 4
rng = np.random.default_rng(0)
LINEARS = {"attention.to_q": (DIM, DIM), "attention.to_k": (DIM, DIM), "attention.to_v": (DIM, DIM),
           "attention.to_out.0": (DIM, DIM), "feed_forward.w1": (2 * DIM, DIM), "feed_forward.w2": (DIM, 2 * DIM),
           "feed_forward.w3": (2 * DIM, DIM), "adaLN_modulation.0": (4 * DIM, 16)}


def block_diag(*blocks: np.ndarray) -> np.ndarray:
    out = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)), np.float32)
    row = col = 0
    for block in blocks:
        out[row:row + block.shape[0], col:col + block.shape[1]] = block
        row, col = row + block.shape[0], col + block.shape[1]
    return out


def _pairs(blocks=("layers.0", "layers.1", "noise_refiner.0")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{module: (A, B)} of a LoRA of every Linear of `blocks`."""
    return {f"{block}.{linear}": (rng.standard_normal((RANK, shape[1])).astype(np.float32),
                                  rng.standard_normal((shape[0], RANK)).astype(np.float32))
            for block in blocks for linear, shape in LINEARS.items()}


def _changes(path) -> dict[str, np.ndarray]:
    """{module: the change B·A its layer makes} of a file in this studio's names (alpha folded)."""
    _header, tensors = read_tensors(path)
    found = {}
    for key, down in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("diffusion_model.").removesuffix(".lora_A.weight")
            found[module] = tensors[f"diffusion_model.{module}.lora_B.weight"] @ down
    return found


def _kohya(module: str, prefix: str = "lora_unet_") -> str:
    return prefix + module.replace(".", "_")


@pytest.mark.parametrize("prefix, note", [("lora_unet_", "kohya's key names"), ("lycoris_", "LyCORIS' key names")],
                         ids=["kohya", "lycoris"])
def test_kohya_names_with_alpha_become_ours_with_the_same_change(tmp_path, prefix, note):
    pairs = _pairs()
    alpha = 2.0  # a scale of alpha / rank = 0.5, folded into B
    tensors = {}
    for module, (down, up) in pairs.items():
        tensors[f"{_kohya(module, prefix)}.lora_down.weight"] = down
        tensors[f"{_kohya(module, prefix)}.lora_up.weight"] = up
        tensors[f"{_kohya(module, prefix)}.alpha"] = np.array(alpha, np.float32)
    source = tmp_path / "musubi.safetensors"
    source.write_bytes(encode(tensors, "F32", {"ss_network_dim": "4", "ss_network_alpha": "2"}))
    assert needs_converting(read_header(source))
    made = convert(source, tmp_path / "ours.safetensors")
    assert made.notes == [note] and made.modules == len(pairs)
    changes = _changes(tmp_path / "ours.safetensors")
    assert set(changes) == set(pairs)  # the refiner's layers too: noise_refiner.0.attention.to_q, ...
    for module, (down, up) in pairs.items():
        np.testing.assert_allclose(changes[module], alpha / RANK * up @ down, rtol=1e-5, atol=1e-5)
    header = read_header(tmp_path / "ours.safetensors")
    assert header["__metadata__"]["converted_from"] == note
    assert header["__metadata__"]["ss_network_dim"] == "4"  # the rest of the metadata kept
    assert not any(key.endswith(".alpha") for key in header) and not needs_converting(header)


@pytest.mark.parametrize("shared_down", [False, True])
def test_the_original_checkpoints_fused_qkv_is_split_exactly(tmp_path, shared_down):
    """The three Linears' LoRAs stacked (A of rank 3r, B block-diagonal), or one A shared by all three: each of
    to_q, to_k and to_v gets its own exact change, at rank r."""
    pairs = _pairs(("layers.0",))
    q, k, v = (pairs[f"layers.0.attention.to_{x}"] for x in "qkv")
    if shared_down:
        down = q[0]
        up = np.concatenate([q[1], k[1], v[1]])
        expected = {x: part[1] @ down for x, part in zip("qkv", (q, k, v), strict=True)}
    else:
        down = np.concatenate([q[0], k[0], v[0]])
        up = block_diag(q[1], k[1], v[1])
        expected = {x: part[1] @ part[0] for x, part in zip("qkv", (q, k, v), strict=True)}
    out_down, out_up = pairs["layers.0.attention.to_out.0"]
    tensors = {"diffusion_model.layers.0.attention.qkv.lora_A.weight": down,
               "diffusion_model.layers.0.attention.qkv.lora_B.weight": up,
               "diffusion_model.layers.0.attention.out.lora_A.weight": out_down,
               "diffusion_model.layers.0.attention.out.lora_B.weight": out_up}
    path = tmp_path / "comfy.safetensors"
    path.write_bytes(encode(tensors, "BF16", {}))
    made = converted_if_needed(path)  # in place, as an import does
    assert made.notes == ["the original checkpoint's fused qkv"]
    changes = _changes(path)
    assert set(changes) == {"layers.0.attention.to_q", "layers.0.attention.to_k", "layers.0.attention.to_v",
                            "layers.0.attention.to_out.0"}
    scale = np.abs(out_up @ out_down).max()
    for x in "qkv":  # BF16 in, BF16 out: equal to its precision
        np.testing.assert_allclose(changes[f"layers.0.attention.to_{x}"], expected[x], atol=0.02 * scale)
    assert set(lora_ranks(read_header(path)).values()) == {RANK}  # the other blocks' zero columns dropped
    assert {info["dtype"] for key, info in read_header(path).items() if key != "__metadata__"} == {"BF16"}


def test_a_file_in_our_names_is_left_as_it_is(tmp_path):
    path = tmp_path / "ours.safetensors"
    data = encode({f"diffusion_model.{m}.lora_{p}.weight": t for m, (a, b) in _pairs().items()
                   for p, t in (("A", a), ("B", b))}, "BF16", {})
    path.write_bytes(data)
    assert converted_if_needed(path) is None and path.read_bytes() == data
    (tmp_path / "text.safetensors").write_text("hello")
    assert converted_if_needed(tmp_path / "text.safetensors") is None  # the import's own check names it


@pytest.mark.parametrize("key, kind", [("lora_unet_layers_0_attention_to_q.lokr_t2", "a LyCORIS LoKr of convolutions"),
                                       ("lora_unet_layers_0_attention_to_q.oft_blocks", "an OFT file"),
                                       ("diffusion_model.layers.0.attention.to_q.dora_scale", "a DoRA file")])
def test_convolution_lycoris_oft_and_dora_files_are_refused_by_name(tmp_path, key, kind):
    path = tmp_path / "x.safetensors"
    path.write_bytes(encode({key: np.ones((4, 4), np.float32)}, "F32", {}))
    with pytest.raises(LoraFileError, match=f"This is {kind}.*, not a LoRA: ComfyUI loads it"):
        converted_if_needed(path)


def test_a_half_layer_or_a_fused_layer_that_does_not_split_is_refused(tmp_path):
    half = tmp_path / "half.safetensors"
    half.write_bytes(encode({"lora_unet_layers_0_attention_to_q.lora_down.weight": np.ones((4, 8), np.float32)},
                            "F32", {}))
    with pytest.raises(LoraFileError, match="has only half of its LoRA"):
        converted_if_needed(half)
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(encode({"diffusion_model.layers.0.attention.qkv.lora_A.weight": np.ones((4, 8), np.float32),
                            "diffusion_model.layers.0.attention.qkv.lora_B.weight": np.ones((10, 4), np.float32)},
                           "F32", {}))
    with pytest.raises(LoraFileError, match="do not split into 3 equal parts"):
        converted_if_needed(odd)


def test_a_lokr_in_lycoris_names_becomes_ours(tmp_path):
    """A LoKr as the LyCORIS library writes it (SimpleTuner's): `lycoris_<module with underscores>.lokr_w1`, ...."""
    rng = np.random.default_rng(0)
    tensors = {}
    for module in ("layers.0.attention.to_q", "layers.1.feed_forward.w2"):
        tensors[f"{_kohya(module, 'lycoris_')}.lokr_w1"] = rng.normal(size=(4, 4)).astype(np.float32)
        tensors[f"{_kohya(module, 'lycoris_')}.lokr_w2_a"] = rng.normal(size=(16, 2)).astype(np.float32)
        tensors[f"{_kohya(module, 'lycoris_')}.lokr_w2_b"] = rng.normal(size=(2, 16)).astype(np.float32)
        tensors[f"{_kohya(module, 'lycoris_')}.alpha"] = np.array(1.0, np.float32)
    source = tmp_path / "simpletuner.safetensors"
    source.write_bytes(encode(tensors, "F32", {}))
    made = convert(source, tmp_path / "ours.safetensors")
    assert made.notes == ["LyCORIS' key names"] and made.modules == 2
    header = read_header(tmp_path / "ours.safetensors")
    assert "diffusion_model.layers.1.feed_forward.w2.lokr_w2_b" in header
    assert "diffusion_model.layers.0.attention.to_q.alpha" in header and not needs_converting(header)
