"""Make smaller (trainer.lora_resize) on a LoRA of the full-size Z-Image-Turbo transformer's shapes (30 blocks:
attention q/k/v/out 3840x3840, SwiGLU w1/w3 10240x3840 and w2 3840x10240, adaLN 15360x256; random weights) vs
the bare way of the same file: read every tensor and write it back unchanged, in the same run.

    python benchmarks/lora_resize.py [--rank 32] [--to 8] [--dtype BF16] [--rounds 2]
    python benchmarks/lora_resize.py --network lokr --factor 8 --to 32     # a LyCORIS LoKr (trainer.lokr_resize)
    python benchmarks/lora_resize.py --network lokr --factor 16 --to 64 --as-lora   # its LoRA copy (trainer.lokr_lora)

A LoKr is split as the trainer's LoKr factor splits each layer (trainer.lokr_layout), w1 and w2 whole, random.
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

from trainer.lokr_lora import as_lora  # noqa: E402
from trainer.lora_resize import encode, read_tensors, resize  # noqa: E402

MODULES = {"attention.to_q": (3840, 3840), "attention.to_k": (3840, 3840), "attention.to_v": (3840, 3840),
           "attention.to_out.0": (3840, 3840), "feed_forward.w1": (10240, 3840), "feed_forward.w3": (10240, 3840),
           "feed_forward.w2": (3840, 10240), "adaLN_modulation.0": (15360, 256)}
BLOCKS = 30


def make_lora(path: Path, rank: int, dtype: str, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    tensors = {}
    for block in range(BLOCKS):
        for module, (out, inp) in MODULES.items():
            prefix = f"diffusion_model.layers.{block}.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((rank, inp), dtype=np.float32) * 0.01
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, rank), dtype=np.float32) * 0.001
    path.write_bytes(encode(tensors, dtype, {"lora_rank": str(rank)}))
    return sum(t.size for t in tensors.values())


def make_lokr(path: Path, factor: int, dtype: str) -> int:
    from trainer.lokr_layout import factor_shapes

    rng = np.random.default_rng(0)
    tensors = {}
    for block in range(BLOCKS):
        for module, (out, inp) in MODULES.items():
            prefix = f"diffusion_model.layers.{block}.{module}"
            w1, w2 = factor_shapes(inp, out, factor)
            tensors[f"{prefix}.lokr_w1"] = rng.standard_normal(w1, dtype=np.float32) * 0.01
            tensors[f"{prefix}.lokr_w2"] = rng.standard_normal(w2, dtype=np.float32) * 0.01
    path.write_bytes(encode(tensors, dtype, {"network": "lokr", "lokr_factor": str(factor)}))
    return sum(t.size for t in tensors.values())


def lora_shaped(tensors: dict[str, np.ndarray], rank: int) -> dict[str, np.ndarray]:
    """A LoRA's tensors (zeros) of the shapes a LoKr's LoRA copy at `rank` has: the bare way's file."""
    out = {}
    for key, w1 in tensors.items():
        if key.endswith(".lokr_w1"):
            prefix = key[: -len(".lokr_w1")]
            w2 = tensors[f"{prefix}.lokr_w2"]
            out[f"{prefix}.lora_A.weight"] = np.zeros((rank, w1.shape[1] * w2.shape[1]), np.float32)
            out[f"{prefix}.lora_B.weight"] = np.zeros((w1.shape[0] * w2.shape[0], rank), np.float32)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--to", type=int, default=8)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--network", default="lora", choices=["lora", "lokr"])
    ap.add_argument("--factor", type=int, default=8, help="the LoKr factor (with --network lokr)")
    ap.add_argument("--as-lora", action="store_true", help="a LoKr's LoRA copy at --to instead of a smaller LoKr")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lora-resize-") as tmp:
        source = Path(tmp) / "full.safetensors"
        lokr = args.network == "lokr"
        params = make_lokr(source, args.factor, args.dtype) if lokr else make_lora(source, args.rank, args.dtype)
        bare, made = [], []
        for index in range(args.rounds):  # alternating, so machine noise hits both alike
            start = time.perf_counter()
            header, tensors = read_tensors(source)
            if args.as_lora:  # the bare way writes a file of the LoRA copy's shapes
                tensors = lora_shaped(tensors, args.to)
            (Path(tmp) / "copy.safetensors").write_bytes(encode(tensors, args.dtype, header["__metadata__"]))
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = (as_lora if args.as_lora else resize)(source, args.to, Path(tmp) / f"small-{index}.safetensors")
            made.append(time.perf_counter() - start)
        size = source.stat().st_size
    bare_s, made_s = statistics.median(bare), statistics.median(made)
    kind = f"LoKr factor {args.factor}, w1 and w2 whole" if lokr else f"LoRA rank {args.rank}"
    print(f"{kind} of the full-size transformer's shapes: {BLOCKS} blocks x {len(MODULES)} layers, "
          f"{params:,} weights, {args.dtype}, {size / 2**20:,.1f} MB")
    written = "a file of the copy's shapes" if args.as_lora else "the file"
    print(f"bare read + write of {written}: median {bare_s:.2f} s")
    what = "LoRA copy" if args.as_lora else "make smaller"
    print(f"{what} at rank {args.to}: median {made_s:.2f} s -> {result.size / 2**20:,.1f} MB, kept "
          f"{result.kept:.3f} (random weights: the worst case, no direction stands out)")
    print(f"ratio {what} / bare: {made_s / bare_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
