"""Which scaled-dot-product-attention kernel the transformer uses.

diffusers' Z-Image attention calls torch's scaled_dot_product_attention, which picks a kernel by a
priority list. On Hopper the cuDNN and flash kernels are the fast ones; we put the chosen one first
and keep the memory-efficient and math kernels behind it, so a batch the fast kernel cannot take
(a padding mask when captions differ in length) still runs instead of failing. The benchmark checks
with the profiler which kernel really ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

CHOICES = ("auto", "cudnn", "flash", "default")


def _backends(choice: str) -> list:
    from torch.nn.attention import SDPBackend

    fallback = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    if choice == "cudnn":
        return [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, *fallback]
    if choice in ("flash", "auto"):  # auto: flash first; cuDNN is measured by the benchmark before it leads
        return [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, *fallback]
    raise ValueError(f"unknown attention backend {choice!r}")


def _only(choice: str):
    from torch.nn.attention import SDPBackend

    return {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[choice]


def probe(choice: str, device: torch.device, dtype: torch.dtype, heads: int, head_dim: int) -> str | None:
    """None when `choice`'s own kernel runs unmasked attention of this shape; else why not."""
    from torch.nn.attention import sdpa_kernel

    kernel = _only("flash" if choice == "auto" else choice)
    q = torch.randn(1, heads, 256, head_dim, device=device, dtype=dtype)
    try:
        with sdpa_kernel([kernel]):
            F.scaled_dot_product_attention(q, q, q)
    except RuntimeError as exc:
        return f"the {choice} kernel cannot run here ({str(exc).splitlines()[0][:160]})"
    return None


class AttentionChoice:
    """A context manager factory: `with choice():` around forward and backward (backward matters
    because checkpointed blocks recompute their attention there)."""

    def __init__(self, backends: list | None, label: str):
        self.backends, self.label = backends, label

    def __call__(self):
        if self.backends is None:
            return contextlib.nullcontext()
        from torch.nn.attention import sdpa_kernel

        try:
            return sdpa_kernel(self.backends, set_priority=True)
        except TypeError:  # a PyTorch without set_priority: the list still allows only these, fallbacks included
            return sdpa_kernel(self.backends)


def choose(choice: str, device: torch.device, dtype: torch.dtype, heads: int, head_dim: int,
           log: Callable[[str], None]) -> AttentionChoice:
    """The attention setting for this job, with one log line saying what runs and why."""
    if choice == "default":
        log("Attention: PyTorch's default kernel order.")
        return AttentionChoice(None, "default")
    if device.type != "cuda":
        if choice != "auto":
            log(f"attention_backend={choice} applies to CUDA GPUs; the CPU uses PyTorch's default attention.")
        return AttentionChoice(None, "default")
    reason = probe(choice, device, dtype, heads, head_dim)
    if reason:
        log(f"Attention: {reason}; using PyTorch's default kernel order instead.")
        return AttentionChoice(None, "default")
    first = "flash" if choice == "auto" else choice
    log(f"Attention: {first} kernel first (memory-efficient and math kernels only for batches it cannot take).")
    return AttentionChoice(_backends(choice), first)
