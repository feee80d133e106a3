"""Merge LoRAs (trainer.lora_merge) of the full-size Z-Image-Turbo transformer's shapes (random weights) vs the bare
way of the same files: read every tensor of both and write one file back, in the same run.

    python benchmarks/lora_merge.py [--rank 32] [--to 32] [--dtype BF16] [--rounds 2]
    python benchmarks/lora_merge.py --lokr 16 --to 64    # a LoRA and a LyCORIS LoKr of factor 16, at rank 64

Two LoRAs of `--rank` are merged exactly (rank 2 x rank: the stacked factors) and at `--to` (each layer's largest
directions, as Make smaller keeps them). With `--lokr` the second file is a LoKr of that factor, merged at `--to`
only (a LoKr has no exact LoRA form).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.lora_resize import BLOCKS, MODULES, make_lokr, make_lora  # noqa: E402
from trainer.lora_merge import merge  # noqa: E402
from trainer.lora_resize import encode, read_tensors  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--to", type=int, default=32)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lokr", type=int, default=None, metavar="FACTOR", help="the second file a LoKr of FACTOR")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lora-merge-") as tmp:
        a, b = Path(tmp) / "a.safetensors", Path(tmp) / "b.safetensors"
        make_lora(a, args.rank, args.dtype)
        if args.lokr:
            make_lokr(b, args.lokr, args.dtype)
        else:
            make_lora(b, args.rank, args.dtype, seed=1)
        bare, exact, lower = [], [], []
        for index in range(args.rounds):  # alternating, so machine noise hits all alike
            start = time.perf_counter()
            _header, tensors = read_tensors(a)
            tensors.update({f"b.{key}": value for key, value in read_tensors(b)[1].items()})
            (Path(tmp) / "copy.safetensors").write_bytes(encode(tensors, args.dtype, {}))
            bare.append(time.perf_counter() - start)
            if not args.lokr:
                start = time.perf_counter()
                whole = merge([(a, 1.0), (b, 0.7)], Path(tmp) / f"exact-{index}.safetensors")
                exact.append(time.perf_counter() - start)
            start = time.perf_counter()
            small = merge([(a, 1.0), (b, 0.7)], Path(tmp) / f"low-{index}.safetensors", rank=args.to)
            lower.append(time.perf_counter() - start)
        size = a.stat().st_size
    bare_s = statistics.median(bare)
    second = f"a LoKr of factor {args.lokr}" if args.lokr else "another"
    print(f"a LoRA of rank {args.rank} and {second} of the full-size transformer's shapes: {BLOCKS} blocks x "
          f"{len(MODULES)} layers, {args.dtype}, {size / 2**20:,.1f} MB the LoRA")
    print(f"bare read of both + write of one file: median {bare_s:.2f} s")
    runs = [] if args.lokr else [(f"exact merge (rank {whole.rank})", exact, whole)]
    for label, times, made in (*runs, (f"merge at rank {args.to}", lower, small)):
        took = statistics.median(times)
        print(f"{label}: median {took:.2f} s -> {made.size / 2**20:,.1f} MB, kept {made.kept:.3f}; "
              f"ratio / bare {took / bare_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
