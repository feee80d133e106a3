"""Cached latents and caption embeddings where the step needs them: on the GPU.

A blocking host-to-GPU copy waits until the GPU has finished all queued work, so a step that copies
its inputs the plain way stalls the GPU at every step. Small datasets (the usual LoRA: tens to a few
hundred images) are moved to the GPU once; bigger ones stay in pinned host memory and are copied
without blocking. On the CPU the tensors are used as they are.
"""

from __future__ import annotations

import torch

RESIDENT_LIMIT_BYTES = 2 << 30


class DeviceData:
    def __init__(self, cached, device: torch.device, embed_dtype: torch.dtype, resident: bool | None = None):
        self.device, self.embed_dtype = device, embed_dtype
        self.gpu = device.type == "cuda"
        latents, embeddings = cached.latents, cached.embeddings
        if self.gpu:
            size = sum(t.numel() * 4 for t in latents) + sum(
                t.numel() * embed_dtype.itemsize for t in embeddings.values())
            self.resident = size <= RESIDENT_LIMIT_BYTES if resident is None else resident
            if self.resident:
                latents = [t.to(device) for t in latents]
                embeddings = {k: v.to(device, embed_dtype) for k, v in embeddings.items()}
            else:
                latents = [t.pin_memory() for t in latents]
                embeddings = {k: v.to(embed_dtype).pin_memory() for k, v in embeddings.items()}
        else:
            self.resident = False
        self.latents, self.embeddings = latents, embeddings
        masks = getattr(cached, "masks", None) or []
        self.masks = [m.to(device) if m is not None and self.resident else m for m in masks]
        self.has_masks = any(m is not None for m in self.masks)

    def to_device(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A host tensor on the device, copied without blocking the host on a GPU."""
        if not self.gpu:
            return tensor.to(device=self.device, dtype=dtype)
        if tensor.device.type == "cpu" and not tensor.is_pinned():
            tensor = tensor.pin_memory()  # from PyTorch's caching host allocator: reused, and safe
        return tensor.to(device=self.device, dtype=dtype, non_blocking=True)

    def latent(self, index: int) -> torch.Tensor:
        return self.to_device(self.latents[index])

    def mask(self, index: int) -> torch.Tensor | None:
        """The sample's alpha mask on the device (alpha_mask), None for an opaque image."""
        mask = self.masks[index] if index < len(self.masks) else None
        return None if mask is None else self.to_device(mask)

    def embedding(self, text: str) -> torch.Tensor:
        return self.to_device(self.embeddings[text], self.embed_dtype)
