"""Gradient checkpointing per block, chosen from the GPU memory the job may use.

Recomputing a block's forward in the backward pass saves its activations (about 1.3 GiB per main
block at 1024 px) at the cost of a third more arithmetic for that block. On a GPU the run measures that
figure on its own block, kernels and settings (activation_memory.py); the rule below is the fallback.
`auto` keeps as many blocks as fit un-checkpointed and recomputes only the rest: none at all on a
card that holds everything, every block on a small one. The choice goes through diffusers' own hook
(`_gradient_checkpointing_func`), so module names, LoRA keys and state dicts are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trainer.engine.activation_memory import BlockMemory

GIB = 1 << 30
# Bytes one main block saves per token, per unit of dim and of the SwiGLU width, as counted by
# activation_memory.saved_bytes on the full-size block in bf16 autocast with a rank-32 LoRA
# (benchmarks/activation_memory.py): per dim, four float32 RMSNorm tensors, eight bf16 hidden-state
# tensors, six bf16 matmul inputs, q/k in float32 after RoPE and q/k/v/out in bf16 (64 bytes); per
# SwiGLU unit, four bf16 tensors (8 bytes). 1.29 GiB at 1024 px; 1.30 measured with the LoRA casts.
DIM_BYTES, HIDDEN_BYTES = 64, 8
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
    return tokens * (DIM_BYTES * dim + HIDDEN_BYTES * hidden)


def plan(mode: str, transformer: nn.Module, device: torch.device, tokens: int, trainable_bytes: int,
         budget_gb: float | None = None, measured: BlockMemory | None = None) -> CheckpointPlan:
    """Which main blocks recompute their activations. `tokens`: the largest sequence of a micro-batch
    (image + caption tokens, times the batch size); `trainable_bytes`: LoRA weights, gradients and
    optimizer state that are still to be allocated or already are; `measured`: one block's saved
    activations as measured on this device (else the rule above)."""
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
    if measured is not None:
        per_block, how = measured.at(tokens), "measured"
    else:
        per_block, how = block_activation_bytes(tokens, dim, int(dim / 3 * 8)), "about"
    spare = capacity - torch.cuda.memory_allocated(device) - trainable_bytes - RESERVE_BYTES
    plain = max(0, min(total, int(spare // per_block)))
    if plain < total:  # a recomputed block briefly holds its full activations again
        plain = max(0, min(total, int((spare - per_block) // per_block)))
    reason = (f"auto: {source}, {how} {per_block / GIB:.2f} GiB of activations per block at {tokens} tokens, "
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


def log_plan(transformer, device, mode, tokens, params, budget_gb, log: Callable[[str], None],
             measured: BlockMemory | None = None) -> CheckpointPlan:
    chosen = plan(mode, transformer, device, tokens, trainable_bytes(params), budget_gb, measured)
    apply(transformer, chosen)
    log(describe(chosen))
    return chosen
