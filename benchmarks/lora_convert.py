"""Bringing another trainer's LoRA to this studio's names on the way into the library (trainer.lora_formats), on a
LoRA of the full-size Z-Image-Turbo transformer's shapes: kohya's names with lora_down/lora_up and alpha (musubi-
tuner's), and the original checkpoint's layout (q, k, v fused as `attention.qkv`, block-diagonal), each against
the bare way of the same file (read every tensor and write it back unchanged), alternating, in the same run. And
LyCORIS LoHas of the same shapes written as LoRAs (trainer.loha_lora: exact up to dim 16, rank 256 above), against
reading the LoHa and writing a file of the LoRA's shapes.

    python benchmarks/lora_convert.py [--rank 32] [--dtype BF16] [--rounds 2] [--loha-dims 8 16 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.lora_resize import BLOCKS, MODULES  # noqa: E402
from trainer.lora_formats import convert  # noqa: E402
from trainer.lora_resize import encode, read_tensors  # noqa: E402

QKV = ("attention.to_q", "attention.to_k", "attention.to_v")


def _weights(rng, rank: int, out: int, inp: int) -> tuple[np.ndarray, np.ndarray]:
    return (rng.standard_normal((rank, inp), dtype=np.float32) * 0.01,
            rng.standard_normal((out, rank), dtype=np.float32) * 0.001)


def kohya_lora(rank: int) -> dict[str, np.ndarray]:
    rng, tensors = np.random.default_rng(0), {}
    for block in range(BLOCKS):
        for module, (out, inp) in MODULES.items():
            name = f"lora_unet_layers_{block}_{module.replace('.', '_')}"
            tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"] = _weights(rng, rank, out, inp)
            tensors[f"{name}.alpha"] = np.array(rank / 2, np.float32)
    return tensors


def fused_lora(rank: int) -> dict[str, np.ndarray]:
    """q, k and v as one attention.qkv (A of rank 3r stacked, B block-diagonal), to_out.0 as attention.out."""
    rng, tensors = np.random.default_rng(0), {}
    for block in range(BLOCKS):
        prefix = f"diffusion_model.layers.{block}"
        parts = [_weights(rng, rank, *MODULES[module]) for module in QKV]
        up = np.zeros((3 * 3840, 3 * rank), np.float32)
        for index, (_down, part_up) in enumerate(parts):
            up[index * 3840:(index + 1) * 3840, index * rank:(index + 1) * rank] = part_up
        tensors[f"{prefix}.attention.qkv.lora_A.weight"] = np.concatenate([down for down, _up in parts])
        tensors[f"{prefix}.attention.qkv.lora_B.weight"] = up
        for module, (out, inp) in MODULES.items():
            if module in QKV:
                continue
            name = f"{prefix}.{'attention.out' if module == 'attention.to_out.0' else module}"
            tensors[f"{name}.lora_A.weight"], tensors[f"{name}.lora_B.weight"] = _weights(rng, rank, out, inp)
    return tensors


def loha(dim: int) -> dict[str, np.ndarray]:
    """A LoHa of every layer at `dim`, its factors of the sizes LyCORIS trains them to (_a small, _b near 1)."""
    rng, tensors = np.random.default_rng(0), {}
    for block in range(BLOCKS):
        for module, (out, inp) in MODULES.items():
            name = f"lycoris_layers_{block}_{module.replace('.', '_')}"
            for which in ("w1", "w2"):
                tensors[f"{name}.hada_{which}_a"] = rng.standard_normal((out, dim), dtype=np.float32) * 0.01
                tensors[f"{name}.hada_{which}_b"] = rng.standard_normal((dim, inp), dtype=np.float32)
            tensors[f"{name}.alpha"] = np.array(dim, np.float32)
    return tensors


def _shaped_like(path: Path) -> dict[str, np.ndarray]:
    """Zeros of the shapes of the tensors in `path`: what the bare way writes for a file that changes size."""
    _header, tensors = read_tensors(path)
    return {key: np.zeros_like(value) for key, value in tensors.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--loha-dims", type=int, nargs="*", default=[8, 16])
    args = ap.parse_args(argv)
    print(f"LoRAs of the full-size transformer's shapes: {BLOCKS} blocks x {len(MODULES)} layers, rank {args.rank}, "
          f"{args.dtype}; {args.rounds} rounds alternating, medians")
    cases = [("kohya names + alpha", lambda: kohya_lora(args.rank)), ("fused qkv + out", lambda: fused_lora(args.rank))]
    cases += [(f"LyCORIS LoHa dim {dim}", lambda dim=dim: loha(dim)) for dim in args.loha_dims]
    with tempfile.TemporaryDirectory(prefix="lora-convert-") as tmp:
        source, target = Path(tmp) / "source.safetensors", Path(tmp) / "ours.safetensors"
        for label, make in cases:
            source.write_bytes(encode(make(), args.dtype, {"ss_network_dim": str(args.rank)}))
            convert(source, target)  # once first: the bare way writes the shapes the conversion writes
            written, bare, made = _shaped_like(target), [], []
            for _round in range(args.rounds):
                start = time.perf_counter()
                header, _read = read_tensors(source)
                (Path(tmp) / "copy.safetensors").write_bytes(encode(written, args.dtype, header["__metadata__"]))
                bare.append(time.perf_counter() - start)
                del _read
                made.append(_timed(convert, source, target))
            bare_s, made_s = statistics.median(bare), statistics.median(made)
            size, out = source.stat().st_size, target.stat().st_size
            kept = read_tensors(target)[0]["__metadata__"].get("loha_kept")
            print(f"{label}: {size / 2**20:,.1f} MB -> {out / 2**20:,.1f} MB; bare read + write {bare_s:.2f} s, "
                  f"convert {made_s:.2f} s, ratio {made_s / bare_s:.2f}{f', kept {kept}' if kept else ''}")
    return 0


def _timed(work, *args) -> float:
    start = time.perf_counter()
    work(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
