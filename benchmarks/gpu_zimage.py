"""Full-size Z-Image-Turbo transformer training step on a CUDA GPU, with random weights (no download).

    python benchmarks/gpu_zimage.py [--size 1024] [--rank 32] [--steps 5] [--modes bf16,float8]

Builds ZImageTransformer2DModel with Tongyi-MAI/Z-Image-Turbo's real config (6.15 B parameters) directly
on the GPU in bf16, adds the engine's rank-32 LoRA on the 240 `layers.N` linears, optionally stores the
frozen base in float8/int8 like `quantize_base`, and runs the engine's own TrainingLoop.step() (bf16
autocast, gradient checkpointing, AdamW, gradient clipping) on one 1024x1024 latent with a 128-token
caption. Prints seconds per step and peak GPU memory for each mode (the training peak, measured after
the model is built, and the peak while building, which includes the bf16 copy before quantizing).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

REAL_CONFIG = {  # Tongyi-MAI/Z-Image-Turbo transformer/config.json
    "all_patch_size": (2,), "all_f_patch_size": (1,), "in_channels": 16, "dim": 3840, "n_layers": 30,
    "n_refiner_layers": 2, "n_heads": 30, "n_kv_heads": 30, "norm_eps": 1e-5, "qk_norm": True,
    "cap_feat_dim": 2560, "rope_theta": 256.0, "t_scale": 1000.0, "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
}


def build_transformer(device: torch.device):
    from diffusers import ZImageTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # allocate and initialise in bf16 straight on the GPU
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = ZImageTransformer2DModel(**REAL_CONFIG)
    finally:
        torch.set_default_dtype(previous)
    model.requires_grad_(False)
    return model


def run_mode(mode: str, args, device: torch.device) -> dict:
    from trainer.engine import model as zmodel
    from trainer.engine.cache import CachedData
    from trainer.engine.data import BatchPlan, ImageItem, Sample
    from trainer.engine.loop import TrainingLoop
    from trainer.engine.quant import quantize_linears
    from trainer.recipes import get_recipe

    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    transformer = build_transformer(device)
    params = zmodel.add_lora(transformer, args.rank, float(args.rank), seed=0)
    if mode != "bf16":
        quantize_linears(transformer, mode)
    gc.collect()
    torch.cuda.empty_cache()
    transformer.enable_gradient_checkpointing()
    transformer.train()
    build_s = time.perf_counter() - t0
    weights_gb = torch.cuda.memory_allocated(device) / 2**30
    build_peak_gb = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)  # the training peak below excludes the bf16 build

    config = get_recipe("zimage-turbo").config_from_dict({
        "rank": args.rank, "resolutions": [args.size], "quantize_base": "none" if mode == "bf16" else mode,
        "optimizer": "adamw", "caption_dropout": 0.0,
    })
    g = torch.Generator("cpu").manual_seed(0)
    latent = torch.randn(16, args.size // 8, args.size // 8, generator=g)
    caption = torch.randn(128, REAL_CONFIG["cap_feat_dim"], generator=g)
    cached = CachedData(latents=[latent], embeddings={"caption": caption, "": caption[:8]})
    samples = [Sample(ImageItem(Path("x.png"), "caption", "0" * 64, args.size, args.size), (args.size, args.size))]
    loop = TrainingLoop(config, transformer, params, cached, samples, BatchPlan(samples, 1, 0), device,
                        torch.bfloat16)
    loop.setup_optimizer(lambda message: None)

    times = []
    for index in range(args.warmup + args.steps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss = loop.step()
        torch.cuda.synchronize(device)
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
    result = {
        "mode": mode,
        "s_per_step": statistics.median(times),
        "peak_gb": torch.cuda.max_memory_allocated(device) / 2**30,
        "weights_gb": weights_gb,
        "build_peak_gb": build_peak_gb,
        "build_s": build_s,
        "loss": loss,
        "lora_params": sum(p.numel() for p in params),
    }
    del loop, transformer, params
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--modes", default="bf16,float8", help="comma list of bf16, float8, int8")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA GPU found: this benchmark needs one (the full-size transformer alone is 12 GB in bf16). "
              "Run it on the pod; benchmarks/trainer_step.py runs on the CPU.")
        return 2
    device = torch.device("cuda")
    total_gb = torch.cuda.get_device_properties(device).total_memory / 2**30
    print(f"GPU: {torch.cuda.get_device_name(device)}, {total_gb:.0f} GiB; torch {torch.__version__}; "
          f"{args.size}x{args.size}, LoRA rank {args.rank}, batch 1, gradient checkpointing, bf16 autocast, AdamW")
    for mode in args.modes.split(","):
        r = run_mode(mode.strip(), args, device)
        print(f"{r['mode']:>6} base: {r['s_per_step']:.3f} s/step, training peak {r['peak_gb']:.1f} GiB (weights + "
              f"LoRA {r['weights_gb']:.1f} GiB; peak while building/quantizing {r['build_peak_gb']:.1f} GiB), "
              f"build {r['build_s']:.1f} s, {r['lora_params'] / 1e6:.1f} M LoRA params, last loss {r['loss']:.3f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
