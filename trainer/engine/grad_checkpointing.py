"""Gradient checkpointing per block, chosen from the GPU memory the job may use.

Each main block runs one of three ways:
- plain: it keeps all its activations (about 1.2 GiB at 1024 px) and costs nothing extra;
- selective: it keeps only its matmul and attention outputs (about a third of that) and recomputes
  the element-wise work in the backward pass (selective_checkpoint.py): almost no extra arithmetic;
- full: it keeps only its input and recomputes its whole forward (a third more arithmetic for it).
`auto` picks the cheapest mix that fits: every block plain on a card that holds everything, else as many
plain blocks as fit and the rest full. Selective blocks are left out of `auto`: on an H200 a selective
block cost 9-12 ms of a step and a fully recomputed one 5.6 ms (benchmarks/RESULTS.md), because the
selective policy runs every op of the block through a Python dispatch mode, so full recomputation is
both faster and smaller. `selective` stays a choice of its own. On a GPU the run measures one block's
figures on its own kernels and settings (activation_memory.py); the rule below is the fallback. The
choice goes through diffusers' own hook (`_gradient_checkpointing_func`), so module names, LoRA keys and
state dicts are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trainer.engine import selective_checkpoint
from trainer.engine.activation_memory import BlockMemory

GIB = 1 << 30
# Bytes one main block saves per token, per unit of dim and of the SwiGLU width, as counted by
# activation_memory on the full-size block in bf16 autocast with a rank-32 LoRA
# (benchmarks/activation_memory.py). Plain: per dim, float32 RMSNorm tensors, bf16 hidden states and
# matmul inputs, q/k in float32 after RoPE and q/k/v/out in bf16 (56 bytes); per SwiGLU unit, four
# bf16 tensors (8 bytes): 1.17 GiB at 1024 px, 1.18 measured (1.30 before the LoRA layers stopped
# keeping their own bf16 copies of their inputs, model.add_lora).
# Selective: q, k, v, the attention output, the two output projections and the input (14 bytes per
# dim), the two SwiGLU products (4 bytes per unit): 0.37 GiB at 1024 px, 0.375 measured.
DIM_BYTES, HIDDEN_BYTES = 56, 8
SELECTIVE_DIM_BYTES, SELECTIVE_HIDDEN_BYTES = 14, 4
RESERVE_BYTES = 2 * GIB  # cuBLAS/attention workspaces, allocator fragmentation, the loss tensors
# whether `auto` mixes in selective blocks: not while they cost more than full recomputation (see above)
AUTO_SELECTIVE = False
# A compiled block keeps about half of what the same block keeps uncompiled (Inductor recomputes cheap
# element-wise work in its backward pass): on an H200 at 1024 px, 30 compiled blocks kept 17.7 GiB against
# 35.3 uncompiled (benchmarks/RESULTS.md). The block is measured uncompiled (before compiling), so `auto`
# plans compiled blocks with this share of it, a margin above the 0.50 measured; a GPU where it is more
# runs out of memory once and recomputes every block from then on.
COMPILED_SHARE = 0.55


@dataclass(frozen=True)
class CheckpointPlan:
    checkpointed: tuple[int, ...]  # indices into transformer.layers that recompute everything
    total: int
    reason: str
    selective: tuple[int, ...] = ()  # indices that keep their products and recompute the rest

    @property
    def count(self) -> int:
        return len(self.checkpointed)

    @property
    def plain(self) -> int:
        return self.total - self.count - len(self.selective)


def block_activation_bytes(tokens: int, dim: int, hidden: int, selective: bool = False) -> int:
    if selective:
        return tokens * (SELECTIVE_DIM_BYTES * dim + SELECTIVE_HIDDEN_BYTES * hidden)
    return tokens * (DIM_BYTES * dim + HIDDEN_BYTES * hidden)


def plan(mode: str, transformer: nn.Module, device: torch.device, tokens: int, trainable_bytes: int,
         budget_gb: float | None = None, measured: BlockMemory | None = None,
         selective_ok: bool = True, compiled: bool = False) -> CheckpointPlan:
    """How each main block runs. `tokens`: the largest sequence of a micro-batch (image + caption
    tokens, times the batch size); `trainable_bytes`: LoRA weights, gradients and optimizer state that
    are still to be allocated or already are; `measured`: one block's activations as measured on this
    device (else the rule above); `selective_ok`: False where selective recomputation cannot run
    (compiled blocks), so only plain and full are planned."""
    total = len(transformer.layers)
    every = tuple(range(total))
    if mode == "on":
        return CheckpointPlan(every, total, "gradient_checkpointing is on")
    if mode == "selective":
        if selective_ok:
            return CheckpointPlan((), total, "gradient_checkpointing is selective", every)
        return CheckpointPlan(every, total, "compiled blocks cannot recompute selectively, so every block "
                                            "recomputes everything")
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
    hidden = int(dim / 3 * 8)
    full, how = block_activation_bytes(tokens, dim, hidden), "about"
    kept = block_activation_bytes(tokens, dim, hidden, selective=True)
    if measured is not None:
        full, how = measured.at(tokens), "measured"
        kept = measured.at(tokens, selective=True) or kept
    if compiled:
        full = int(full * COMPILED_SHARE)
    spare = capacity - torch.cuda.memory_allocated(device) - trainable_bytes - RESERVE_BYTES
    selective_ok = selective_ok and AUTO_SELECTIVE
    plain, selective = _mix(total, spare, full, kept if selective_ok else None, tokens * dim * 2)
    recomputed = total - plain - selective
    reason = (f"auto: {source}, {how} {full / GIB:.2f} GiB of activations per block at {tokens} tokens"
              + (f" (compiled: {COMPILED_SHARE:g} of an uncompiled block's)" if compiled else "")
              + (f" ({kept / GIB:.2f} GiB selective)" if selective_ok else "")
              + f", {plain} of {total} blocks keep theirs")
    # all saved activations are alive when the backward pass starts, so which blocks recompute does not
    # change the peak; the first ones do
    return CheckpointPlan(tuple(range(recomputed)), total, reason, tuple(range(recomputed, recomputed + selective)))


def _mix(total: int, spare: float, full: int, kept: int | None, inputs: int) -> tuple[int, int]:
    """(plain, selective) blocks that fit in `spare` bytes; the rest recompute everything and keep only
    their `inputs`. A recomputing block briefly holds a plain block's activations again, so that much
    is set aside as soon as any block recomputes."""
    if total * full <= spare:
        return total, 0
    spare -= full

    def fit(lower: int, upper: int) -> int:  # blocks that can hold `upper` bytes while the rest hold `lower`
        return min(total, max(0, int((spare - total * lower) // max(1, upper - lower))))

    if kept is None:
        return fit(inputs, full), 0
    if total * kept <= spare:
        plain = fit(kept, full)
        return plain, total - plain
    return 0, fit(inputs, kept)


def lighter(current: CheckpointPlan, selective_ok: bool, why: str) -> tuple[CheckpointPlan, str] | None:
    """The next plan that needs less memory, and what it does in words: every block recomputes everything
    (with AUTO_SELECTIVE, blocks that keep everything turn selective first); None when nothing is left."""
    every = tuple(range(current.total))
    if current.plain and selective_ok and AUTO_SELECTIVE:
        return (CheckpointPlan(current.checkpointed, current.total, why,
                               tuple(i for i in every if i not in current.checkpointed)),
                "every block now keeps only its matmul and attention outputs (selective recomputation)")
    if current.count < current.total:
        return CheckpointPlan(every, current.total, why), "every block now recomputes its activations " \
                                                         "(gradient checkpointing on)"
    return None


def apply(transformer: nn.Module, checkpoint_plan: CheckpointPlan) -> None:
    """Route the chosen main blocks through torch.utils.checkpoint (selectively or in full); everything
    else runs plainly (the refiners and embedders take no gradient, so recomputing them would only cost
    time)."""
    if not checkpoint_plan.checkpointed and not checkpoint_plan.selective:
        if getattr(transformer, "gradient_checkpointing", False):
            transformer.disable_gradient_checkpointing()
        return
    full = {id(transformer.layers[i]) for i in checkpoint_plan.checkpointed}
    selective = {id(transformer.layers[i]) for i in checkpoint_plan.selective}

    def run(block: nn.Module, *args):
        if id(block) in full:
            return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False)
        if id(block) in selective:
            return selective_checkpoint.run(block, *args)
        return block(*args)

    transformer.enable_gradient_checkpointing(gradient_checkpointing_func=run)


def describe(checkpoint_plan: CheckpointPlan) -> str:
    p = checkpoint_plan
    return (f"Gradient checkpointing: {p.count} of {p.total} blocks recompute their activations, "
            f"{len(p.selective)} recompute only element-wise work, {p.plain} keep everything ({p.reason}).")


def trainable_bytes(params: list[torch.Tensor], optimizer_states: int = 2) -> int:
    """Weights + gradients + optimizer states of the LoRA, all float32."""
    return sum(p.numel() for p in params) * 4 * (2 + optimizer_states)


def log_plan(transformer, device, mode, tokens, params, budget_gb, log: Callable[[str], None],
             measured: BlockMemory | None = None, selective_ok: bool = True, compiled: bool = False) -> CheckpointPlan:
    chosen = plan(mode, transformer, device, tokens, trainable_bytes(params), budget_gb, measured, selective_ok,
                  compiled)
    apply(transformer, chosen)
    log(describe(chosen))
    return chosen
