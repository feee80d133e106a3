"""Alpha masks (config `alpha_mask`): an image with transparency trains only on its visible part, so a
subject cut out of its background teaches the LoRA the subject and not the background.

The mask is the image's alpha channel put through the same resize, crop and mirror as its pixels
(data.fit_to_bucket), then averaged down to the latent grid: a latent cell half covered counts half.
A fully opaque image has no mask and trains exactly as without the option.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from trainer.dataset_checks import has_alpha
from trainer.engine.data import Sample, fit_to_bucket


def load_mask(sample: Sample, latent_size: tuple[int, int]) -> torch.Tensor | None:
    """[1, h, w] float32 in 0..1 on the latent grid (h, w), or None when the image is fully opaque."""
    with Image.open(sample.item.path) as raw:
        im = ImageOps.exif_transpose(raw)
        if not has_alpha(im):
            return None
        alpha = im.convert("RGBA").getchannel("A")
    if alpha.getextrema()[0] == 255:
        return None
    alpha = fit_to_bucket(alpha, sample)
    h, w = latent_size
    small = alpha.resize((w, h), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).unsqueeze(0)


def masked_mse(squared: torch.Tensor, masks: list[torch.Tensor | None] | None) -> torch.Tensor:
    """Per-example mean of `squared` [B, C, H, W] over its visible part: each mask [1, H, W] weights the
    cells (None: the whole example). Without any mask it is exactly `squared.mean((1, 2, 3))`."""
    if not masks or all(m is None for m in masks):
        return squared.mean(dim=(1, 2, 3))
    ones = torch.ones_like(squared[0, :1])
    weights = torch.stack([ones if m is None else m.to(squared.device, squared.dtype) for m in masks])
    visible = (weights.sum(dim=(1, 2, 3)) * squared.shape[1]).clamp_min(1e-6)
    return (squared * weights).sum(dim=(1, 2, 3)) / visible
