"""What one full-size Z-Image main block keeps for the backward pass, plain and selectively
checkpointed, measured by counting what autograd saves and what the selective checkpoint keeps
(trainer/engine/activation_memory.py), against the rules of thumb the checkpointing plan falls back on
(trainer/engine/grad_checkpointing.py). Random weights in the real block shape
(dim 3840, 30 heads, SwiGLU 10240), one main block and one refiner each, LoRA rank 32, bf16 autocast.

    python benchmarks/activation_memory.py [--device cpu|cuda] [--sizes 512 1024] [--float8]

Runs on a CPU in under a minute (a few GiB of memory); on a Hopper/Ada GPU, --float8 measures the
block with float8 matmuls.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks import zimage_runs as zr  # noqa: E402
from trainer.engine import activation_memory as am  # noqa: E402
from trainer.engine import grad_checkpointing as gc_plan  # noqa: E402
from trainer.engine import model as zmodel  # noqa: E402

GIB = 1 << 30


def build(device: torch.device, rank: int, float8: bool):
    shape = {**zr.REAL_CONFIG, "n_layers": 1, "n_refiner_layers": 1}
    transformer = zr.build_transformer(shape, device, torch.bfloat16)
    zmodel.add_lora(transformer, rank, float(rank), seed=0)
    if float8:
        from trainer.engine.speed_setup import quantize
        from trainer.recipes import get_recipe

        config = get_recipe("zimage-turbo").config_from_dict({"quantize_base": "float8", "float8_matmuls": True})
        quantize(config, transformer, device, torch.bfloat16, print, check_errors=False)
    transformer.train()
    return shape, transformer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--caption-tokens", type=int, default=128)
    ap.add_argument("--float8", action="store_true", help="float8 matmuls (a Hopper/Ada GPU)")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape, transformer = build(device, args.rank, args.float8)
    dim, hidden = shape["dim"], int(shape["dim"] / 3 * 8)
    blocks = zr.REAL_CONFIG["n_layers"]

    def context():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    print(f"{device.type}, torch {torch.__version__}, rank {args.rank}, caption {args.caption_tokens} tokens"
          f"{', float8 matmuls' if args.float8 else ''}")
    print("| size | tokens | measured GiB per block | rule of thumb GiB | measured / rule | 30 blocks GiB | "
          "selective: measured GiB | rule GiB | 30 blocks GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    g = torch.Generator("cpu").manual_seed(0)
    for size in args.sizes:
        latent = torch.randn(16, 1, size // 8, size // 8, generator=g).to(device, torch.bfloat16)
        caption = torch.randn(args.caption_tokens, shape["cap_feat_dim"], generator=g).to(device, torch.bfloat16)
        t = torch.full((1,), 0.5, device=device)
        measured = am.measure(transformer, lambda x=latent, c=caption, t=t: transformer([x], t, [c], return_dict=False),
                              context)
        rule = gc_plan.block_activation_bytes(measured.tokens, dim, hidden)
        kept, kept_rule = measured.selective_bytes, gc_plan.block_activation_bytes(measured.tokens, dim, hidden, True)
        print(f"| {size} | {measured.tokens} | {measured.saved_bytes / GIB:.3f} | {rule / GIB:.3f} | "
              f"{measured.saved_bytes / rule:.3f} | {blocks * measured.saved_bytes / GIB:.1f} | {kept / GIB:.3f} | "
              f"{kept_rule / GIB:.3f} | {blocks * kept / GIB:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
