"""The speed settings of a job applied to its transformer, each with one log line saying what runs:
8-bit base weights (float8 matmuls where the GPU has them), gradient checkpointing per block,
the attention kernel and regional torch.compile. Each falls back with a reason instead of failing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.engine import activation_memory, compile_blocks
from trainer.engine import attention as zattention
from trainer.engine import grad_checkpointing as gc_plan
from trainer.engine.errors import one_line
from trainer.engine.fast_linear import error_summary, float8_factory, float8_matmul_support
from trainer.engine.flops import image_tokens
from trainer.engine.quant import quantize_linears
from trainer.recipes.zimage_plan import COMPILE_MIN_STEPS


@dataclass
class SpeedSetup:
    attention: zattention.AttentionChoice
    checkpointing: gc_plan.CheckpointPlan
    compiled: bool
    float8_matmuls: bool
    float8_errors: dict[str, float]


def quantize(config, transformer, device: torch.device, compute_dtype: torch.dtype,
             log: Callable[[str], None], check_errors: bool = True) -> tuple[bool, dict[str, float]]:
    """quantize_base on a GPU: float8 matmuls when asked for and possible, else 8-bit storage only."""
    mode, errors = config.quantize_base, {}
    if mode == "none":
        return False, errors
    if device.type != "cuda":
        log(f"quantize_base={mode} is ignored on the CPU.")
        return False, errors
    if mode == "float8" and config.float8_matmuls:
        reason = float8_matmul_support(device)
        if reason is None:
            count = quantize_linears(transformer, mode, float8_factory(compute_dtype, errors if check_errors else None))
            log(f"Base transformer in float8 with float8 matmuls ({count} linear layers; relative error against "
                f"bf16 on random inputs: {error_summary(errors)}).")
            return True, errors
        log(f"float8 matmuls are off: {reason}; the float8 weights are expanded to bf16 for each product.")
    count = quantize_linears(transformer, mode)
    log(f"Base transformer stored in {mode} ({count} linear layers).")
    return False, errors


def longest_sequence(samples, cached, batch_size: int) -> int:
    """Image + caption tokens of the biggest micro-batch this job can draw."""
    caption = max((len(v) for v in cached.embeddings.values()), default=0)
    biggest = max((image_tokens(w, h) for w, h in {s.bucket for s in samples}), default=0)
    padded = biggest + (-biggest) % 32 + caption + (-caption) % 32  # the model pads both to multiples of 32
    return padded * max(1, min(batch_size, len(samples)))


def measure_block(transformer, device: torch.device, samples, data, compute_dtype: torch.dtype,
                  autocast_dtype: torch.dtype | None, attention, log: Callable[[str], None]):
    """One main block's saved activations for the job's biggest example, on this device and with these
    kernels (None, with a log line, when it cannot be measured)."""
    if not samples:
        return None
    index = max(range(len(samples)), key=lambda i: image_tokens(*samples[i].bucket))
    latent = data.latent(index).to(compute_dtype).unsqueeze(1)  # [C, F=1, H, W]
    caption = data.embedding(samples[index].item.caption)
    t = torch.full((1,), 0.5, device=device)

    def context():
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                           enabled=autocast_dtype is not None))
        stack.enter_context(attention())
        return stack

    try:
        return activation_memory.measure(transformer, lambda: transformer([latent], t, [caption], return_dict=False),
                                         context)
    except torch.OutOfMemoryError:
        failed = "out of GPU memory while running one block"
    except Exception as exc:  # a model without main blocks, a kernel refusing these shapes
        failed = one_line(exc)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log(f"Could not measure one block's activations ({failed}); planning from the rule of thumb.")
    return None


def compile_wanted(config, device: torch.device, log: Callable[[str], None]) -> bool:
    """`compile`, except on a GPU for a job too short to earn the one-time compile back (said in the log)."""
    if config.compile and device.type == "cuda" and config.steps < COMPILE_MIN_STEPS:
        log(f"torch.compile is off for this job: {config.steps} steps would save less time than the one-time compile "
            f"takes (about a minute); it pays from {COMPILE_MIN_STEPS} steps.")
        return False
    return bool(config.compile)


def configure(config, transformer, params, device: torch.device, samples, cached, cache_dir: Path,
              compute_dtype: torch.dtype, log: Callable[[str], None], data=None,
              autocast_dtype: torch.dtype | None = None) -> SpeedSetup:
    fast8, errors = quantize(config, transformer, device, compute_dtype, log)
    heads = transformer.config.n_heads
    attention = zattention.choose(config.attention_backend, device, compute_dtype, heads,
                                  transformer.config.dim // heads, log)
    measured = None
    if config.gradient_checkpointing == "auto" and device.type == "cuda" and data is not None:
        measured = measure_block(transformer, device, samples, data, compute_dtype, autocast_dtype, attention, log)
    wanted = compile_wanted(config, device, log)
    will_compile = wanted and compile_blocks.compile_support(device) is None
    plan = gc_plan.log_plan(transformer, device, config.gradient_checkpointing,
                            longest_sequence(samples, cached, config.batch_size), params, config.vram_budget_gb, log,
                            measured, selective_ok=not wanted, compiled=will_compile)
    compiled = False
    if wanted:
        compiled = compile_blocks.enable(transformer, device, Path(cache_dir) / "torch_compile", log)
    return SpeedSetup(attention, plan, compiled, fast8, errors)
