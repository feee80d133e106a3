"""The speed settings of a job applied to its transformer, each with one log line saying what runs:
8-bit base weights (float8 matmuls where the GPU has them), gradient checkpointing per block,
the attention kernel and regional torch.compile. Each falls back with a reason instead of failing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.engine import attention as zattention
from trainer.engine import compile_blocks
from trainer.engine import grad_checkpointing as gc_plan
from trainer.engine.fast_linear import error_summary, float8_factory, float8_matmul_support
from trainer.engine.flops import image_tokens
from trainer.engine.quant import quantize_linears


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
    caption += (-caption) % 32
    biggest = max((image_tokens(w, h) for w, h in {s.bucket for s in samples}), default=0)
    return (biggest + caption) * max(1, min(batch_size, len(samples)))


def configure(config, transformer, params, device: torch.device, samples, cached, cache_dir: Path,
              compute_dtype: torch.dtype, log: Callable[[str], None]) -> SpeedSetup:
    fast8, errors = quantize(config, transformer, device, compute_dtype, log)
    plan = gc_plan.log_plan(transformer, device, config.gradient_checkpointing,
                            longest_sequence(samples, cached, config.batch_size), params, config.vram_budget_gb, log)
    heads = transformer.config.n_heads
    attention = zattention.choose(config.attention_backend, device, compute_dtype, heads,
                                  transformer.config.dim // heads, log)
    compiled = False
    if config.compile:
        compiled = compile_blocks.enable(transformer, device, Path(cache_dir) / "torch_compile", log)
    return SpeedSetup(attention, plan, compiled, fast8, errors)
