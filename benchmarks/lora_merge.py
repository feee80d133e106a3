"""Merge LoRAs (trainer.lora_merge) of the full-size Z-Image-Turbo transformer's shapes (random weights) vs the bare
way of the same files: read every tensor of both and write one file back, in the same run.

    python benchmarks/lora_merge.py [--rank 32] [--to 32] [--dtype BF16] [--rounds 2]

Two LoRAs of `--rank` are merged exactly (rank 2 x rank: the stacked factors) and at `--to` (each layer's largest
directions, as Make smaller keeps them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.lora_resize import BLOCKS, MODULES, make_lora  # noqa: E402
from trainer.lora_merge import merge  # noqa: E402
from trainer.lora_resize import encode, read_tensors  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--to", type=int, default=32)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lora-merge-") as tmp:
        a, b = Path(tmp) / "a.safetensors", Path(tmp) / "b.safetensors"
        make_lora(a, args.rank, args.dtype)
        make_lora(b, args.rank, args.dtype, seed=1)
        bare, exact, lower = [], [], []
        for index in range(args.rounds):  # alternating, so machine noise hits all alike
            start = time.perf_counter()
            _header, tensors = read_tensors(a)
            tensors.update({f"b.{key}": value for key, value in read_tensors(b)[1].items()})
            (Path(tmp) / "copy.safetensors").write_bytes(encode(tensors, args.dtype, {}))
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            whole = merge([(a, 1.0), (b, 0.7)], Path(tmp) / f"exact-{index}.safetensors")
            exact.append(time.perf_counter() - start)
            start = time.perf_counter()
            small = merge([(a, 1.0), (b, 0.7)], Path(tmp) / f"low-{index}.safetensors", rank=args.to)
            lower.append(time.perf_counter() - start)
        size = a.stat().st_size
    bare_s = statistics.median(bare)
    print(f"two LoRAs of the full-size transformer's shapes: {BLOCKS} blocks x {len(MODULES)} layers, rank "
          f"{args.rank}, {args.dtype}, {size / 2**20:,.1f} MB each")
    print(f"bare read of both + write of one file: median {bare_s:.2f} s")
    for label, times, made in ((f"exact merge (rank {whole.rank})", exact, whole),
                               (f"merge at rank {args.to}", lower, small)):
        took = statistics.median(times)
        print(f"{label}: median {took:.2f} s -> {made.size / 2**20:,.1f} MB, kept {made.kept:.3f}; "
              f"ratio / bare {took / bare_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
