"""Time per step of the real training loop vs a bare forward+backward+optimizer step.

    python benchmarks/trainer_step.py [--size 256] [--steps 20] [--rounds 3] [--device cpu|cuda] [--optimizer prodigy]
                                      [--network lokr --lokr-factor 16]

Both run in one process on the same LoRA-wrapped transformer (tiny demo Z-Image, training adapter merged)
and the same optimizer; the two alternate step by step so machine noise hits both alike. The real step is the engine's
TrainingRun.run_step() (cached data, caption dropout, timestep sampling, NaN guard, gradient clipping,
metrics line, progress, control checks); the bare step is the minimum a training step must do. Goal:
ratio <= 1.05. It also counts text-encoder and VAE-encoder forward calls during the steps (goal: 0), and times
one evaluation (the evaluation loss: 4 images x 3 noise levels, forward only) against the bare step, with
what it adds to training when it runs every 250 steps (the default: at every checkpoint).
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
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


def make_dataset(folder: Path, size: int, count: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        im = Image.new("RGB", (size, size), (40 * i, 90, 200 - 30 * i))
        ImageDraw.Draw(im).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(250, 220, 40))
        im.save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"[trigger] a yellow circle, picture {i}")
    return folder


class CallCounter:
    """Counts forward calls of the VAE encoder and the text encoder classes, wherever they are."""

    def __init__(self):
        from diffusers.models.autoencoders.vae import Encoder
        from transformers.models.qwen3.modeling_qwen3 import Qwen3Model

        self.counts = {"text_encoder": 0, "vae_encoder": 0}
        self._patched = []
        for cls, name in ((Encoder, "vae_encoder"), (Qwen3Model, "text_encoder")):
            original = cls.forward

            def forward(module, *args, _original=original, _name=name, **kwargs):
                self.counts[_name] += 1
                return _original(module, *args, **kwargs)

            cls.forward = forward
            self._patched.append((cls, original))

    def restore(self):
        for cls, original in self._patched:
            cls.forward = original


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="training resolution (multiple of 16)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of each kind per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default=None)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--ema-decay", type=float, default=0.0, help="the real loop with ema_decay (0: off)")
    ap.add_argument("--preserve-class", default="", help="the real loop with preserve_class (e.g. person; empty: off)")
    ap.add_argument("--optimizer", default="auto", choices=["auto", "adamw", "prodigy"],
                    help="the real loop's optimizer (the bare step uses the same one); other than AdamW, a bare "
                         "step with AdamW is timed too")
    ap.add_argument("--network", default="lora", choices=["lora", "lokr"],
                    help="what the real loop trains (the bare step trains the same weights)")
    ap.add_argument("--lokr-factor", type=int, default=16)
    args = ap.parse_args(argv)

    from studio.demo import ensure_demo_models
    from studio.settings import load_settings
    from trainer.engine.control import TrainingControl
    from trainer.engine.loop import Progress
    from trainer.engine.training_run import TrainingRun, pick_device
    from trainer.evaluation_set import EVAL_SIGMAS
    from trainer.job_log import RunLog
    from trainer.recipes import get_recipe

    dev = pick_device(args.device)
    with tempfile.TemporaryDirectory(prefix="trainer-step-") as tmp:
        root = Path(tmp)
        paths = ensure_demo_models(load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1"}), caption=False)
        dataset = make_dataset(root / "trainer" / "datasets" / "bench", args.size)
        job_dir = root / "trainer" / "jobs" / "bench"
        job_dir.mkdir(parents=True)
        config = get_recipe("zimage-turbo").config_from_dict({
            "name": "bench", "trigger_word": "zkw", "steps": 10**6, "rank": 32, "resolutions": [args.size],
            "save_every": 10**6, "sample_every": 0, "gradient_checkpointing": args.gradient_checkpointing,
            "ema_decay": args.ema_decay, "preserve_class": args.preserve_class, "optimizer": args.optimizer,
            "learning_rate": 1.0 if args.optimizer == "prodigy" else 1e-4,
            "eval_every": 0,  # the evaluation is timed apart, below
            "network": args.network, "lokr_factor": args.lokr_factor,
        })
        progress = Progress(lambda event: None, config.steps, dev, 0)
        run = TrainingRun(config, dataset, job_dir, paths, TrainingControl(job_dir), progress, dev,
                           root / "trainer" / "cache", RunLog(job_dir / "log.txt"))
        t0 = time.perf_counter()
        run.prepare()
        prepare_s = time.perf_counter() - t0
        loop = run.loop
        transformer, optimizer = loop.transformer, loop.optimizer

        # the bare step: same model, optimizer and data shape, nothing else
        x0 = loop.cached.latents[0].unsqueeze(0).to(dev)
        embeds = [loop.cached.embeddings[run.samples[0].item.caption].to(dev, loop.model_dtype)]
        t_in = torch.tensor([0.5], device=dev)
        autocast = {"device_type": dev.type, "dtype": run.autocast_dtype or torch.float32,
                    "enabled": run.autocast_dtype is not None}

        def bare_step(optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            noise = torch.randn_like(x0)
            x_t = 0.5 * x0 + 0.5 * noise
            with torch.autocast(**autocast):
                out = transformer(list(x_t.to(loop.model_dtype).unsqueeze(2).unbind(0)), t_in, embeds,
                                  return_dict=False)[0]
            loss = F.mse_loss(-torch.stack([o.float() for o in out]).squeeze(2), noise - x0)
            loss.backward()
            optimizer.step()

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize()

        def timed(fn, n) -> list[float]:
            times = []
            for _ in range(n):
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - start)
            return times

        counter = CallCounter()
        try:
            timed(run.run_step, args.warmup)
            timed(bare_step, args.warmup)
            # another optimizer than AdamW: a bare step with AdamW over the same LoRA weights, to price it
            adamw = None
            if "AdamW" not in type(optimizer).__name__:
                adamw = torch.optim.AdamW(loop.params, lr=1e-4, weight_decay=config.weight_decay)
                timed(lambda: bare_step(adamw), args.warmup)
            real, bare, bare_adamw = [], [], []
            for _ in range(args.rounds):
                for _ in range(args.steps):  # alternate step by step so load changes hit both alike
                    real += timed(run.run_step, 1)
                    bare += timed(bare_step, 1)
                    if adamw is not None:
                        bare_adamw += timed(lambda: bare_step(adamw), 1)
            evaluator = run.evaluation.evaluator
            evaluated = timed(lambda: evaluator.measure(loop.state.step), args.rounds)
            forwards = len(evaluator.examples) * len(EVAL_SIGMAS)
        finally:
            counter.restore()
            run.close()
        steps_run = args.warmup + args.rounds * args.steps

    real_med, bare_med = statistics.median(real), statistics.median(bare)
    ratio = real_med / bare_med
    trained = f"LoKr factor {args.lokr_factor}" if args.network == "lokr" else "LoRA rank 32"
    print(f"device: {dev.type}; tiny Z-Image transformer, {trained}, {args.size}x{args.size}, batch 1, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, "
          f"preserve_class {args.preserve_class or 'off'}, optimizer {type(optimizer).__name__}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"setup (cache + model) {prepare_s:.2f} s; {args.rounds * args.steps} timed steps of each kind, alternating")
    print(f"real loop step:  median {real_med * 1000:.2f} ms  (mean {statistics.mean(real) * 1000:.2f} ms)")
    print(f"bare step:       median {bare_med * 1000:.2f} ms  (mean {statistics.mean(bare) * 1000:.2f} ms)")
    if bare_adamw:
        adamw_med = statistics.median(bare_adamw)
        print(f"bare step with AdamW: median {adamw_med * 1000:.2f} ms; the bare step with "
              f"{type(optimizer).__name__} takes {bare_med / adamw_med:.3f}x as long")
    if args.preserve_class:  # two more passes a step: the planned factor, not the overhead goal
        from trainer.recipes.zimage_plan import PRESERVATION_FACTOR

        print(f"ratio real/bare: {ratio:.3f}  (preserve_class adds a forward pass without gradient and a forward "
              f"and backward pass; the estimate plans {PRESERVATION_FACTOR}x)")
    else:
        print(f"ratio real/bare: {ratio:.3f}  (goal <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'})")
    eval_med = statistics.median(evaluated)
    print(f"one evaluation ({forwards} forward passes): median {eval_med * 1000:.2f} ms = "
          f"{eval_med / bare_med:.2f} bare steps; every 250 steps it adds {eval_med / (250 * real_med) * 100:.1f}% "
          "to training")
    per_step = {k: v / steps_run for k, v in counter.counts.items()}
    print(f"encoder calls per step after caching: text encoder {per_step['text_encoder']:.2f}, "
          f"VAE encoder {per_step['vae_encoder']:.2f}  (goal 0: "
          f"{'met' if not any(counter.counts.values()) else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
