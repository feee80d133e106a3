"""How much memory one main block keeps for the backward pass, measured instead of assumed.

The bytes a block's activations hold depend on the attention kernel (flash keeps its output and
log-sum-exp, the math kernel keeps the whole score matrix), on float8 matmuls (they keep no input),
on where the LoRA sits and on autocast. So before planning gradient checkpointing the run feeds its
biggest training example through the embedders and refiners, catches the first main block's inputs,
runs that block once with autograd on, and counts every tensor autograd saves for the backward pass
(each storage once; frozen weights and the inputs the blocks share are not activations). That is
the figure on the job's own device, kernels and settings, at the job's longest sequence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trainer.engine.selective_checkpoint import kept_bytes


class _Caught(Exception):
    def __init__(self, args: tuple, kwargs: dict):
        super().__init__("first main block reached")
        self.block_args, self.block_kwargs = args, kwargs


@dataclass(frozen=True)
class BlockMemory:
    saved_bytes: int  # what autograd keeps for one main block
    tokens: int  # the sequence length it was measured at (batch x image + caption tokens)
    selective_bytes: int | None = None  # what it keeps when selectively checkpointed

    def at(self, tokens: int, selective: bool = False) -> int | None:
        """Bytes at another sequence length (linear: flash-style kernels keep O(tokens) per block); None
        for `selective` when that was not measured."""
        value = self.selective_bytes if selective else self.saved_bytes
        return None if value is None else int(value * tokens / max(1, self.tokens))


def block_inputs(transformer: nn.Module, forward: Callable[[], object]) -> tuple[tuple, dict]:
    """The positional and keyword inputs of transformer.layers[0] when `forward()` runs; the forward is
    cut short there, so only the embedders and refiners run (without autograd)."""

    def catch(_module, args, kwargs):
        raise _Caught(args, kwargs)

    handle = transformer.layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        with torch.no_grad():
            forward()
    except _Caught as caught:
        return caught.block_args, caught.block_kwargs
    finally:
        handle.remove()
    raise RuntimeError("the transformer's forward never reached its first main block")


def _storage_key(tensor: torch.Tensor) -> tuple[int, int] | None:
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # a tensor subclass without one storage
        return None
    return storage.data_ptr(), storage.nbytes()


def saved_bytes(block: nn.Module, args: tuple, kwargs: dict, context: Callable[[], contextlib.AbstractContextManager]
                = contextlib.nullcontext) -> int:
    """Bytes autograd saves when `block` runs once on these inputs; the hidden state (args[0]) is taken
    as needing a gradient, as it does for every main block after the first."""
    hidden = args[0].detach().requires_grad_(True)
    shared = {_storage_key(t) for t in (*args[1:], *kwargs.values()) if isinstance(t, torch.Tensor)}
    shared |= {_storage_key(t) for t in (*block.parameters(), *block.buffers())}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key is not None and key not in shared:
            seen[key[0]] = key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), context():
        out = block(hidden, *args[1:], **kwargs)
    del out  # frees everything that was saved
    return sum(seen.values())


def measure(transformer: nn.Module, forward: Callable[[], object],
            context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> BlockMemory:
    """BlockMemory of transformer.layers[0] for the example `forward()` feeds, at the sequence length
    the block sees (image + caption tokens as the model pads them, times the batch)."""
    args, kwargs = block_inputs(transformer, lambda: _in(context, forward))
    hidden, block = args[0], transformer.layers[0]
    return BlockMemory(saved_bytes(block, args, kwargs, context), hidden.shape[0] * hidden.shape[1],
                       kept_bytes(block, args, kwargs, context))


def _in(context, forward):
    with context():
        return forward()
