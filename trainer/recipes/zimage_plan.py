"""What the zimage-turbo recipe knows about a job before it runs: how long and how much memory it
takes on a given machine (a rough model, stated as such in the UI), and how many steps a dataset needs.

Everything reads the typed config, so a default changes in one place (the config class) only.
"""

from __future__ import annotations

from dataclasses import dataclass

# Relative seconds per 1024-px training step (bf16, gradient checkpointing on); rough, for planning only.
GPU_SECONDS = {"H200": 0.9, "H100": 1.0, "A100": 1.7, "L40S": 2.0, "L40": 2.3, "RTX 6000 Ada": 2.1, "4090": 2.2,
               "5090": 1.6, "A6000": 3.2, "A40": 3.3, "3090": 3.6, "A5000": 4.2, "4080": 3.0, "A4500": 4.8,
               "4070": 4.5, "A4000": 6.0, "L4": 5.5, "T4": 12.0}
TRANSFORMER_PARAMS = 6.15e9
LORA_PARAMS_PER_RANK = 2.65e6
# gradient_checkpointing -> (step time against recomputing every block, GB of activations per
# megapixel of the largest bucket): plain blocks 1.30 GiB each at 1024 px, selective 0.375, a fully
# recomputing block only its 32 MB input plus one block's activations while it recomputes. The
# selective time factor is an estimate until it is measured on a GPU (element-wise work only).
CHECKPOINTING = {"off": (0.75, 42.0), "selective": (0.78, 12.1), "auto": (0.78, 12.1), "on": (1.0, 2.5)}
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
    return 3.0


def estimate(config, images: int, gpu_name: str | None, demo: bool) -> Estimate:
    """(seconds, GB of GPU memory, or RAM on a CPU) for `config` (a ZImageTurboConfig)."""
    resolutions = config.resolutions
    batch = config.batch_size * config.gradient_accumulation
    area = sum((r / 1024) ** 2 for r in resolutions) / len(resolutions)
    sample_area = config.sample_width * config.sample_height / 1024**2
    samplings = config.steps // config.sample_every if config.sample_every else 0
    # each sample step renders every prompt with the LoRA, and without its trigger word; the base once
    sample_calls = (samplings * 2 + 1) * len(config.sample_prompts) * config.sample_steps
    if demo:  # the tiny model on a CPU: dominated by start-up and per-step overhead
        step_s = 0.12 + 0.5 * area * 256
        seconds = 12 + config.steps * step_s * batch + sample_calls * 0.02 * max(1.0, sample_area * 64)
        return Estimate(round(seconds, 1), 0.3, "demo")
    # (step time factor, GB of activations at 1024 px) per gradient_checkpointing mode: the activations
    # are measured (benchmarks/activation_memory.py), "on" is the mode the GPU speed was measured in, and
    # auto usually lands on selective blocks on a 24-48 GB card
    factor, per_megapixel = CHECKPOINTING[config.gradient_checkpointing]
    quantized = config.quantize_base != "none" and gpu_name is not None
    speed = _gpu_speed(gpu_name)
    step_s = speed * area * batch * factor * (1.15 if quantized else 1.0)
    sample_s = sample_calls * speed * 0.3 * sample_area
    load_s = 90 + images * len(resolutions) * 0.25
    seconds = load_s + config.steps * step_s + sample_s
    bytes_per_weight = 1 if quantized else (2 if gpu_name is not None else 4)
    weights = TRANSFORMER_PARAMS * bytes_per_weight / 1e9
    lora = LORA_PARAMS_PER_RANK * config.rank * 16 / 1e9  # weights, grads, two Adam states
    largest = (max(resolutions) / 1024) ** 2 * config.batch_size
    activations = largest * per_megapixel
    memory = weights + lora + activations + 2.5  # + CUDA context, cached embeddings, allocator slack
    return Estimate(round(seconds, 1), round(memory, 1), "gpu" if gpu_name else "cpu")
