"""Selective recomputation: a checkpointed block keeps the outputs of its matrix products and of its
attention, and recomputes only the cheap element-wise work (RMSNorm, RoPE, SiLU gates, adaLN scales,
residual adds, casts) in the backward pass.

Measured on the full-size block (benchmarks/activation_memory.py), that keeps about a fifth of the
activations a plain block keeps, while the arithmetic recomputed is almost none: every matmul and the
attention run once. Gradients are bit-identical to a plain block's (tests/test_engine_memory.py).
A product with a short inner dimension (the LoRA's B side, rank <= 256) is cheap, so it is recomputed
instead of kept. Built on PyTorch's selective activation checkpointing (create_selective_checkpoint_contexts).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

aten = torch.ops.aten
MIN_INNER = 256  # products with a shorter inner dimension are recomputed (LoRA B: the rank)
PRODUCTS = {aten.mm.default: 0, aten.bmm.default: 0, aten._scaled_mm.default: 0, aten.addmm.default: 1}
ATTENTION = {
    getattr(aten, name).default
    for name in ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")
    if hasattr(aten, name)
}


def keeps(op, args: tuple) -> bool:
    """Whether a selectively checkpointed block keeps the output of `op` on these inputs."""
    if op in ATTENTION:
        return True
    position = PRODUCTS.get(op)
    return position is not None and args[position].shape[-1] > MIN_INNER


def _policy(_ctx, op, *args, **_kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if keeps(op, args) else CheckpointPolicy.PREFER_RECOMPUTE


context_fn = functools.partial(create_selective_checkpoint_contexts, _policy)


def run(block: nn.Module, *args):
    """block(*args) with selective recomputation (what grad_checkpointing.apply routes blocks through)."""
    return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False, context_fn=context_fn)


class _KeptOutputs(TorchDispatchMode):
    """Holds every output the policy keeps, as the checkpoint would (so no freed memory is reused and
    counted twice), to add up their storage, each once."""

    def __init__(self):
        super().__init__()
        self.kept: dict[int, torch.Tensor] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if keeps(func, args):
            for tensor in out if isinstance(out, tuple | list) else (out,):
                if isinstance(tensor, torch.Tensor):
                    self.kept[tensor.untyped_storage().data_ptr()] = tensor
        return out


def kept_bytes(block: nn.Module, args: tuple, kwargs: dict,
               context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> int:
    """Bytes a selectively checkpointed `block` holds until its backward pass: the outputs it keeps
    plus its hidden-state input (the other inputs are shared by every block)."""
    counter = _KeptOutputs()
    with torch.no_grad(), context(), counter:
        block(*args, **kwargs)
    hidden = args[0]
    kept = sum(tensor.untyped_storage().nbytes() for tensor in counter.kept.values())
    return kept + hidden.numel() * hidden.element_size()
