"""What the zimage-turbo recipe knows about a job before it runs: how long and how much memory it
takes on a given machine (a rough model, stated as such in the UI), and how many steps a dataset needs.

Everything reads the typed config, so a default changes in one place (the config class) only.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.buckets import example_buckets
from trainer.evaluation_set import EVAL_IMAGES, EVAL_SIGMAS, HOLDOUT_MEASURED, eval_interval
from trainer.lokr_layout import lokr_params, step_cost
from trainer.preview_prompts import preview_prompts

# Seconds per 1024-px training step (bf16, every block recomputed), for planning only: the H100 figure is
# measured (0.703 s, benchmarks/RESULTS.md); the others keep their rough ratio to it.
GPU_SECONDS = {"H200": 0.66, "H100": 0.7, "A100": 1.19, "L40S": 1.4, "L40": 1.61, "RTX 6000 Ada": 1.47,
               "4090": 1.54, "5090": 1.12, "A6000": 2.24, "A40": 2.31, "3090": 2.52, "A5000": 2.94, "4080": 2.1,
               "A4500": 3.36, "4070": 3.15, "A4000": 4.2, "L4": 3.85, "T4": 8.4}
TRANSFORMER_PARAMS = 6.15e9
LORA_PARAMS_PER_RANK = 2.65e6
# gradient_checkpointing -> (step time against recomputing every block, GB of activations per
# megapixel of the largest bucket): plain blocks 1.18 GiB each at 1024 px, selective 0.375, a fully
# recomputing block only its 32 MB input plus one block's activations while it recomputes. Measured on an
# H200 at 1024 px: off 0.68x the step with every block recomputed, selective 1.17x; auto keeps most blocks
# plain on a 48 GB card (0.85x) and recomputes the rest.
CHECKPOINTING = {"off": (0.7, 38.0), "selective": (1.17, 12.1), "auto": (0.85, 12.1), "on": (1.0, 2.5)}
# compile (on by default), measured on an H200 at 1024 px: compiled blocks took 0.301 s/step against 0.448
# uncompiled (bf16, every activation kept); float8 matmuls compiled took 0.86x the bf16 step (0.260 s) where
# uncompiled they cost 1.15x; the one-time compile took about 40 s. Other GPUs are assumed to gain alike.
COMPILED_FACTOR, COMPILED_FLOAT8_FACTOR, COMPILE_SECONDS = 0.67, 0.86, 40.0
# A job this short earns back less than the compile (0.15 s saved a step on the H200: 270 steps for 40 s), so its
# blocks run uncompiled (trainer.engine.speed_setup)
COMPILE_MIN_STEPS = 300
# preserve_class: a step also makes a forward pass without gradient and a second training pass. With frozen
# weights a training pass is about two forward passes (the backward pass computes input gradients only), three
# with every block recomputed: 2.48x by trainer.engine.flops without recomputation, 2.33x with it; measured 2.4x
# with the demo model on 2 CPU cores (benchmarks/trainer_step.py --preserve-class)
PRESERVATION_FACTOR = 2.4
CPU_STEP_SECONDS = 90.0  # the full model on a CPU: only sensible for the demo model

# Steps from the image count. Sources: ai-toolkit's Z-Image-Turbo and FLUX LoRA examples train 3,000
# steps on 10-30 images (100-300 steps per image); FluxGym's defaults (10 repeats x 16 epochs) give
# 160 steps per image; kohya's guides aim at 1,500-3,000 total for a face. So: about 100 steps per
# image, never fewer than 500 (a concept needs that many updates at lr 1e-4) and at most 4,000 (past
# that a LoRA overfits a few images and larger sets get diminishing returns).
STEPS_PER_IMAGE = 100
MIN_STEPS = 500
MAX_STEPS = 4000


@dataclass(frozen=True)
class Estimate:
    seconds: float
    memory_gb: float
    device: str  # "gpu", "cpu" or "demo": the UI says which kind of guess it is
    disk_gb: float = 0.0  # what the job writes at most: its kept checkpoints, the LoRA, the previews


# LoRA parameters per rank of the demo model (measured: 98,176 at rank 32); the real one is LORA_PARAMS_PER_RANK
DEMO_LORA_PARAMS_PER_RANK = 3068
# the demo transformer's sizes (studio.demo.tiny_zimage, which imports torch: the plan runs in the web process)
DEMO_SHAPE = {"dim": 64, "hidden": 170, "layers": 2}
FILE_BYTES_PER_PARAM = {"bf16": 2, "fp16": 2, "fp32": 4}
# a checkpoint's training state (state.pt): float32 weights and AdamW's two moments, plus RNG and the
# step (measured: 1,227,051 bytes for the demo's 98,176 parameters)
STATE_BYTES_PER_PARAM = 12.5
# optimizer prodigy also keeps two float32 sums over every 11th weight (trainer.engine.loop.PRODIGY_SLICE)
PRODIGY_BYTES_PER_PARAM = 2 * 4 / 11
PNG_BYTES_PER_MEGAPIXEL = 2.5e6  # at most: a noisy 1024 px preview (the demo's) is 2.5 MB, photos 1-2 MB


def disk_bytes(config, rounds: int, demo: bool) -> float:
    """The most a job holds on disk at once: `keep_last` checkpoints (one more with held-out images; each the
    training state, float32 weights plus two optimizer moments, and a LoRA file), the final LoRA, and its
    previews (`rounds` pictures of every prompt)."""
    params = trainable_params(config, demo)
    lora = params * FILE_BYTES_PER_PARAM[config.save_dtype]
    saved = max(1, config.steps // config.save_every)
    # with held-out images, the checkpoint nearest their lowest loss is kept beside the last keep_last
    checkpoints = min(config.keep_last + (1 if getattr(config, "holdout_images", 0) else 0), saved)
    previews = rounds * sum(prompt.area for prompt in preview_prompts(config)) * PNG_BYTES_PER_MEGAPIXEL
    state = params * (STATE_BYTES_PER_PARAM + _optimizer_extra(config))
    return checkpoints * (state + lora) + lora + previews


def trainable_params(config, demo: bool) -> float:
    """What the job trains: a LoRA's parameters per rank (all layers), a LoKr's counted from the layers' sizes."""
    if getattr(config, "network", "lora") == "lokr":
        return lokr_params(config.lokr_factor, getattr(config, "lora_targets", "all"), **(DEMO_SHAPE if demo else {}))
    return (DEMO_LORA_PARAMS_PER_RANK if demo else LORA_PARAMS_PER_RANK) * config.rank


def _network_cost(config) -> float:
    """The step time against the rank-32 LoRA GPU_SECONDS was measured with: a LoKr adds its arithmetic."""
    if getattr(config, "network", "lora") != "lokr":
        return 1.0
    return 1.0 + step_cost(config.lokr_factor, getattr(config, "lora_targets", "all"))


def _optimizer_extra(config) -> float:
    """Bytes per LoRA parameter the optimizer keeps beyond AdamW's two moments."""
    return PRODIGY_BYTES_PER_PARAM if getattr(config, "optimizer", "") == "prodigy" else 0.0


def suggested_steps(images: int) -> int:
    """The step count for a dataset of `images` images (see the sources above), rounded to 100."""
    steps = min(MAX_STEPS, max(MIN_STEPS, images * STEPS_PER_IMAGE))
    return int(round(steps / 100.0) * 100)


def _gpu_speed(gpu_name: str | None) -> float:
    if gpu_name is None:
        return CPU_STEP_SECONDS
    for key, seconds in GPU_SECONDS.items():
        if key.lower() in gpu_name.lower():
            return seconds
    return 2.1  # an unknown GPU: about an A6000


def training_areas(resolutions: list[int], sizes: list[tuple[int, int]] | None) -> list[float]:
    """Area of every training example in megapixels of 1024x1024: each image at each resolution, never
    upscaled, an image too small for several resolutions only once (as the engine buckets them). Without
    `sizes` (width, height of each image), every image is taken to reach every resolution."""
    if not sizes:
        return [(r / 1024) ** 2 for r in resolutions]
    return [w * h / 1024**2 for width, height in sizes for w, h in example_buckets(width, height, resolutions)]


def demo_step_seconds(area: float) -> float:
    """The tiny demo model's training step on a 2-core CPU, measured (2026-12): 23 ms at 64 px, 38 ms at
    512 px, 0.30 s at 1024 px (attention grows with the square of the token count)."""
    return 0.02 + 0.03 * area + 0.25 * area * area


def eval_forwards(config, images: int) -> int:
    """Forward passes the job's evaluations make (trainer.engine.evaluation): every `eval_every` steps plus before
    the first and after the last, each measuring a few training images and the held-out ones at three noise
    levels."""
    every = eval_interval(config)
    if not every:
        return 0
    held = min(getattr(config, "holdout_images", 0), HOLDOUT_MEASURED)
    measured = min(max(images - held, 1), EVAL_IMAGES) + held
    return (config.steps // every + 2) * measured * len(EVAL_SIGMAS)


def preserving(config) -> bool:
    """Whether the job's steps carry preserve_class's extra passes."""
    word = getattr(config, "preserve_class", "").strip()
    return bool(word and getattr(config, "preserve_weight", 1.0) and config.trigger_word.strip()
                and word.lower() != config.trigger_word.strip().lower())


def estimate(config, images: int, gpu_name: str | None, demo: bool,
             sizes: list[tuple[int, int]] | None = None) -> Estimate:
    """(seconds, GB of GPU memory, or RAM on a CPU) for `config` (a ZImageTurboConfig); `sizes` (width,
    height of the dataset's images) lets it count only the sizes they really train at."""
    areas = training_areas(config.resolutions, sizes)
    area = sum(areas) / len(areas)
    batch = config.batch_size * config.gradient_accumulation
    if preserving(config):
        batch *= PRESERVATION_FACTOR
    prompts = preview_prompts(config)  # each with its size and steps (a prompt's --w, --h, --s)
    samplings = config.steps // config.sample_every if config.sample_every else 0
    if not config.sample_every or config.steps % config.sample_every:
        samplings += 1  # the last step's too, previews on or off: the proof grid beside the LoRA shows them
    # each sample step renders every prompt with the LoRA, and without its trigger word; the base once (previews on)
    rounds = samplings * (2 if config.trigger_word else 1) + (1 if config.sample_every else 0)
    disk_gb = round(disk_bytes(config, rounds, demo) / 1e9, 4)
    forwards = eval_forwards(config, images)  # the evaluation loss: forward passes at the largest size, no backward
    if demo:  # the tiny model on a CPU: 6 s to start and cache (measured), then per-step overhead and attention
        # a render: its denoising steps (a forward each, about a third of a training step) and the VAE decode and
        # saving (measured: 2.9 s a 1024 px preview of 9 steps, 2026-12-03)
        render_s = sum(p.steps * demo_step_seconds(p.area) / 3 + 2.0 * p.area for p in prompts)
        seconds = (6 + config.steps * batch * demo_step_seconds(area) + rounds * render_s
                   + forwards * demo_step_seconds(max(areas)) / 3)
        return Estimate(round(seconds, 1), 0.3, "demo", disk_gb)
    # (step time factor, GB of activations at 1024 px) per gradient_checkpointing mode: the activations
    # are measured (benchmarks/activation_memory.py), "on" is the mode the GPU speed was measured in
    factor, per_megapixel = CHECKPOINTING[config.gradient_checkpointing]
    quantized = config.quantize_base != "none" and gpu_name is not None
    compiled = bool(getattr(config, "compile", False)) and gpu_name is not None and config.steps >= COMPILE_MIN_STEPS
    speed = _gpu_speed(gpu_name)
    base = 1.15 if quantized else 1.0
    if compiled:
        fast8 = quantized and config.quantize_base == "float8" and getattr(config, "float8_matmuls", False)
        base = COMPILED_FACTOR * (COMPILED_FLOAT8_FACTOR if fast8 else base)
    step_s = speed * area * batch * factor * base * _network_cost(config)
    sample_s = rounds * sum(p.steps * p.area for p in prompts) * speed * 0.3
    per_image = len(areas) / len(sizes) if sizes else len(areas)  # the training examples each image makes
    per_image *= 2 if config.flip_horizontal else 1  # and their mirror images
    load_s = 90 + images * per_image * 0.25  # loading the models, then encoding every example once
    load_s += COMPILE_SECONDS if compiled else 0.0
    seconds = load_s + config.steps * step_s + sample_s + forwards * speed * 0.3 * max(areas)
    bytes_per_weight = 1 if quantized else (2 if gpu_name is not None else 4)
    weights = TRANSFORMER_PARAMS * bytes_per_weight / 1e9
    # weights, grads, two Adam states (and Prodigy's sums)
    lora = trainable_params(config, False) * (16 + _optimizer_extra(config)) / 1e9
    largest = max(areas) * config.batch_size
    activations = largest * per_megapixel
    memory = weights + lora + activations + 2.5  # + CUDA context, cached embeddings, allocator slack
    return Estimate(round(seconds, 1), round(memory, 1), "gpu" if gpu_name else "cpu", disk_gb)
