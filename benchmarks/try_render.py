"""Try the LoRA: one image with the LoRA applied by hooks (what a render does) vs the same LoRA merged into
the weights (the bare baseline: what ComfyUI does), and a whole render against its parts.

    python benchmarks/try_render.py [--size 256] [--steps 9] [--rounds 9] [--device cpu|cuda]
    python benchmarks/try_render.py --shape real --size 1024 --rank 32 --rounds 3    # on a GPU

Both kinds of image come from one loaded tiny demo Z-Image transformer with one LoRA, the same prompt and
seed, alternating so machine noise hits both alike; merging and unmerging is not timed. Hooks let one
loaded model render every strength without touching its weights. Goal: hooks/merged <= 1.10. The tiny
model's layers are 64 wide, so even rank 8 is an eighth of a layer's work (rank 32 of the real 3,840-wide
layers is under 2%): the ratio here is an upper bound.
Then one whole render (trainer.engine.try_lora.render: load, encode, three strengths, PNGs) is timed
against its image time, to show what loading costs, and against the next render of a session that keeps
the models loaded (what the worker's render process does between renders).

`--shape real` (a GPU) times the same two kinds of image on the full-size architecture with random
weights (6.15 B parameters, no download): the transformer's denoising passes of one image, without the
text encoder and the VAE, which are the same for both. `--shape tiny` runs that path on a CPU. `--network lokr`
does the same with a LyCORIS LoKr (its hook computes w1 · X · w2ᵀ per token instead of forming w1 ⊗ w2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def time_images(paths, lora, dev: torch.device, dtype: torch.dtype, args, prompt: str, seed: int, timed):
    """Seconds per image with the LoRA by hooks and merged, alternating; the models go when it returns."""
    from trainer.engine import model as zmodel
    from trainer.engine.sampling import Sampler
    from trainer.preview_prompts import PreviewPrompt

    tokenizer, encoder = zmodel.load_text_encoder(paths, dev, dtype)
    embeddings = {prompt: zmodel.encode_prompts(tokenizer, encoder, [prompt])[0]}
    del tokenizer, encoder
    transformer = zmodel.load_transformer(paths, dev, dtype)
    picture = PreviewPrompt(prompt, args.size, args.size, seed, args.steps, 0.0)
    sampler = Sampler(None, paths, dev, embeddings, None, torch.bfloat16 if dev.type == "cuda" else None)

    return alternate(transformer, lora, lambda: sampler.render_image(transformer, picture, "image"),
                     args.rounds, timed)


def alternate(transformer, lora, image, rounds: int, timed) -> tuple[list[float], list[float]]:
    """Seconds of `image()` with the LoRA by hooks and merged into the weights, one of each per round (a
    warm-up first: the VAE loads, kernels are chosen); merging and unmerging is not timed."""
    from trainer.engine import model as zmodel

    def with_hooks():
        with zmodel.adapter_applied(transformer, lora, 1.0):
            image()

    with_hooks()
    hooks_s, merged_s = [], []
    for _ in range(rounds):
        hooks_s.append(timed(with_hooks))
        zmodel.merge_adapter(transformer, lora, 1.0)
        merged_s.append(timed(image))
        zmodel.merge_adapter(transformer, lora, -1.0)
    return hooks_s, merged_s


def random_lora(transformer, rank: int, scale: float = 0.01):
    """A LoRA of `rank` for every module the engine trains, with random up and down weights."""
    from trainer.engine import model as zmodel

    generator = torch.Generator("cpu").manual_seed(3)
    modules = {}
    for name, module in transformer.named_modules():
        if zmodel.lora_module_names().match(name):
            down = torch.randn(rank, module.in_features, generator=generator) * scale
            modules[name] = (down, torch.randn(module.out_features, rank, generator=generator) * scale, 1.0)
    return zmodel.LoraDelta(modules, "A random LoRA")


def random_lokr(transformer, factor: int, rank: int, scale: float = 0.01):
    """A LyCORIS LoKr for the same modules: w1 of factor x factor whole, w2 as a product of rank `rank` (LyCORIS'
    usual layout), so each change is w1 ⊗ (w2_a · w2_b)."""
    from trainer.engine import model as zmodel
    from trainer.engine.lokr import KronDelta

    def divisor(size: int) -> int:  # the largest factor of `size` up to `factor`, as LyCORIS factorizes
        return max(d for d in range(1, factor + 1) if size % d == 0)

    generator = torch.Generator("cpu").manual_seed(3)
    modules = {}
    for name, module in transformer.named_modules():
        if zmodel.lora_module_names().match(name):
            p, q = divisor(module.out_features), divisor(module.in_features)
            w1 = torch.randn(p, q, generator=generator) * scale
            w2 = (torch.randn(module.out_features // p, rank, generator=generator) * scale,
                  torch.randn(rank, module.in_features // q, generator=generator))
            modules[name] = (w1, w2, 1.0)
    return KronDelta(modules, "A random LoKr")


def full_size(args, dev: torch.device, timed) -> tuple[list[float], list[float]]:
    """Seconds per image's denoising passes, LoRA (or LoKr) by hooks and merged, on the real (or tiny)
    architecture."""
    from benchmarks import zimage_runs as zr

    shape = zr.REAL_CONFIG if args.shape == "real" else zr.TINY_CONFIG
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    transformer = zr.build_transformer(shape, dev, dtype).eval()
    lora = random_lokr(transformer, args.factor, args.rank) if args.network == "lokr" else \
        random_lora(transformer, args.rank)
    generator = torch.Generator("cpu").manual_seed(5)
    latent = torch.randn(shape["in_channels"], 1, args.size // 8, args.size // 8, generator=generator).to(dev, dtype)
    caption = torch.randn(128, shape["cap_feat_dim"], generator=generator).to(dev, dtype)

    @torch.no_grad()
    def denoise():
        for i in range(args.steps):
            transformer([latent], torch.tensor([1.0 - i / args.steps], device=dev), [caption], return_dict=False)

    return alternate(transformer, lora, denoise, args.rounds, timed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--device", default=None)
    ap.add_argument("--shape", choices=["demo", "real", "tiny"], default="demo",
                    help="demo: whole renders on the demo model; real/tiny: the architecture with random weights")
    ap.add_argument("--network", choices=["lora", "lokr"], default="lora",
                    help="real/tiny: a LoRA, or a LyCORIS LoKr (w1 of --factor squared, w2 of --rank)")
    ap.add_argument("--factor", type=int, default=16)
    args = ap.parse_args(argv)

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    prompt, seed = "tok, a red circle on a table", 5

    def timed(run) -> float:
        sync()
        started = time.perf_counter()
        run()
        sync()
        return time.perf_counter() - started

    if args.shape != "demo":
        hooks_s, merged_s = full_size(args, dev, timed)
        hook, plain = statistics.median(hooks_s), statistics.median(merged_s)
        what = f"LoKr factor {args.factor}, w2 rank {args.rank}" if args.network == "lokr" else f"LoRA rank {args.rank}"
        print(f"device: {dev.type}; {args.shape} Z-Image transformer, random weights, {what}, "
              f"{args.size}x{args.size}, {args.steps} denoising passes per image; {args.rounds} images of each kind")
        print(f"image, {args.network} by hooks:      median {hook:.3f} s")
        print(f"image, {args.network} merged (bare): median {plain:.3f} s")
        print(f"ratio hooks/merged: {hook / plain:.3f}  (goal <= 1.10: {'met' if hook / plain <= 1.10 else 'NOT met'})")
        return 0

    from studio.demo import ensure_demo_models
    from studio.demo.tiny_zimage import write_tiny_lora
    from studio.settings import load_settings
    from trainer.engine import model as zmodel
    from trainer.engine.try_lora import TryRequest, render

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = ensure_demo_models(load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1"}), caption=False)
        lora_path = write_tiny_lora(paths.zimage_dir, root / "lora.safetensors", args.rank, seed=7, scale=0.2)
        lora = zmodel.LoraDelta.load(lora_path, label="The LoRA")
        hooks_s, merged_s = time_images(paths, lora, dev, dtype, args, prompt, seed, timed)

        request = TryRequest(prompt=prompt, strengths=(0.0, 0.8, 1.0), seed=seed, width=args.size, height=args.size,
                             steps=args.steps, guidance_scale=0.0)
        images = []
        whole_s = timed(lambda: images.extend(render(request, [lora_path], paths, root / "out", device=str(dev),
                                                     log=lambda _line: None)))
        warm_new_s, warm_seen_s = warm_renders(request, lora_path, paths, root, dev, timed)
    hook, plain = statistics.median(hooks_s), statistics.median(merged_s)
    ratio = hook / plain
    image_s = sum(image["seconds"] for image in images)
    print(f"device: {dev.type}; tiny Z-Image transformer, LoRA rank {args.rank}, {args.size}x{args.size}, "
          f"{args.steps} steps; {args.rounds} images of each kind, alternating")
    print(f"image, LoRA by hooks:      median {hook * 1000:.1f} ms")
    print(f"image, LoRA merged (bare): median {plain * 1000:.1f} ms")
    print(f"ratio hooks/merged: {ratio:.3f}  (goal <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    print(f"whole render of 3 strengths: {whole_s:.2f} s, of which images {image_s:.2f} s "
          f"(loading and encoding {whole_s - image_s:.2f} s)")
    print(f"the next render with the models kept loaded: {warm_new_s:.2f} s with a new prompt "
          f"({warm_new_s / whole_s:.2f} of a render that loads them), {warm_seen_s:.2f} s with a prompt seen before "
          f"({warm_seen_s / whole_s:.2f})")
    return 0


def warm_renders(request, lora_path, paths, root: Path, dev: torch.device, timed) -> tuple[float, float]:
    """Seconds of a render in a session that rendered once already: a new prompt (the encoder waits in
    host memory), then the first prompt again at another seed (no encoder at all)."""
    from trainer.engine.try_lora import RenderSession

    session = RenderSession(paths, str(dev), log=lambda _line: None)
    try:
        session.render(request, [lora_path], root / "warm-0")
        new = type(request)(**{**request.__dict__, "prompt": request.prompt + ", at night"})
        new_s = timed(lambda: session.render(new, [lora_path], root / "warm-1"))
        seen = type(request)(**{**request.__dict__, "seed": request.seed + 1})
        seen_s = timed(lambda: session.render(seen, [lora_path], root / "warm-2"))
    finally:
        session.close()
    return new_s, seen_s


if __name__ == "__main__":
    sys.exit(main())
