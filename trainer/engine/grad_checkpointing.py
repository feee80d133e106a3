"""Gradient checkpointing per block, chosen from the GPU memory the job may use.

Recomputing a block's forward in the backward pass saves its activations (about 1 GB per main block
at 1024 px) at the cost of a third more arithmetic for that block. `auto` keeps as many blocks as fit
un-checkpointed and recomputes only the rest: none at all on a card that holds everything, every
block on a small one. The choice goes through diffusers' own hook (`_gradient_checkpointing_func`),
so module names, LoRA keys and state dicts are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

GIB = 1 << 30
# Saved activations of one main block per token, in units of dim and of the SwiGLU width, 2 bytes
# each (bf16): normed inputs, q/k/v before and after RoPE, the attention output and its statistics,
# the LoRA inputs, the gated feed-forward tensors. A rounded model, checked against the measured peak
# by benchmarks/gpu_zimage.py (it prints predicted and measured memory side by side).
DIM_UNITS, HIDDEN_UNITS, BYTES = 16, 5, 2
RESERVE_BYTES = 2 * GIB  # cuBLAS/attention workspaces, allocator fragmentation, the loss tensors


@dataclass(frozen=True)
class CheckpointPlan:
    checkpointed: tuple[int, ...]  # indices into transformer.layers
    total: int
    reason: str

    @property
    def count(self) -> int:
        return len(self.checkpointed)


def block_activation_bytes(tokens: int, dim: int, hidden: int) -> int:
    return tokens * (DIM_UNITS * dim + HIDDEN_UNITS * hidden) * BYTES


def plan(mode: str, transformer: nn.Module, device: torch.device, tokens: int, trainable_bytes: int,
         budget_gb: float | None = None) -> CheckpointPlan:
    """Which main blocks recompute their activations. `tokens`: the largest sequence of a micro-batch
    (image + caption tokens, times the batch size); `trainable_bytes`: LoRA weights, gradients and
    optimizer state that are still to be allocated or already are."""
    total = len(transformer.layers)
    if mode == "on":
        return CheckpointPlan(tuple(range(total)), total, "gradient_checkpointing is on")
    if mode == "off":
        return CheckpointPlan((), total, "gradient_checkpointing is off")
    if device.type != "cuda":
        return CheckpointPlan((), total, "auto on the CPU: memory is not planned, nothing is recomputed")
    free, card = torch.cuda.mem_get_info(device)
    capacity = free + torch.cuda.memory_reserved(device)  # what this process can hold in all
    source = f"{capacity / GIB:.1f} GiB usable on the GPU"
    if budget_gb is not None and budget_gb * GIB < capacity:
        capacity, source = int(budget_gb * GIB), f"vram_budget_gb {budget_gb:g}"
    dim = transformer.config.dim
    per_block = block_activation_bytes(tokens, dim, int(dim / 3 * 8))
    spare = capacity - torch.cuda.memory_allocated(device) - trainable_bytes - RESERVE_BYTES
    plain = max(0, min(total, int(spare // per_block)))
    if plain < total:  # a recomputed block briefly holds its full activations again
        plain = max(0, min(total, int((spare - per_block) // per_block)))
    reason = (f"auto: {source}, about {per_block / GIB:.2f} GiB of activations per block at {tokens} tokens, "
              f"{plain} of {total} blocks keep theirs")
    # all saved activations are alive when the backward pass starts, so which blocks recompute does not
    # change the peak; the first ones do
    return CheckpointPlan(tuple(range(total - plain)), total, reason)


def apply(transformer: nn.Module, checkpoint_plan: CheckpointPlan) -> None:
    """Route the chosen main blocks through torch.utils.checkpoint; everything else runs plainly
    (the refiners and embedders take no gradient, so recomputing them would only cost time)."""
    if not checkpoint_plan.checkpointed:
        if getattr(transformer, "gradient_checkpointing", False):
            transformer.disable_gradient_checkpointing()
        return
    chosen = {id(transformer.layers[i]) for i in checkpoint_plan.checkpointed}

    def run(block: nn.Module, *args):
        if id(block) in chosen:
            return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False)
        return block(*args)

    transformer.enable_gradient_checkpointing(gradient_checkpointing_func=run)


def describe(checkpoint_plan: CheckpointPlan) -> str:
    return (f"Gradient checkpointing: {checkpoint_plan.count} of {checkpoint_plan.total} blocks recompute their "
            f"activations ({checkpoint_plan.reason}).")


def trainable_bytes(params: list[torch.Tensor], optimizer_states: int = 2) -> int:
    """Weights + gradients + optimizer states of the LoRA, all float32."""
    return sum(p.numel() for p in params) * 4 * (2 + optimizer_states)


def log_plan(transformer, device, mode, tokens, params, budget_gb, log: Callable[[str], None]) -> CheckpointPlan:
    chosen = plan(mode, transformer, device, tokens, trainable_bytes(params), budget_gb)
    apply(transformer, chosen)
    log(describe(chosen))
    return chosen
