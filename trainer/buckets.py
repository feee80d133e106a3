"""Aspect-ratio buckets: the size an image trains at for a given resolution. Torch-free, so the web
process can plan with it (time and memory estimates) exactly as the engine trains."""

from __future__ import annotations

import math

BUCKET_STEP = 16  # Z-Image needs sides that are multiples of 16 (8x VAE, 2x2 patches)
# the longest a bucket is for its width (4096x1024 at 2048 px): a 100,000x1 strip made a 100,000x16 bucket, whose
# encoding alone takes more memory than the rest of the run
MAX_ASPECT = 4


def bucket_for(width: int, height: int, resolution: int) -> tuple[int, int]:
    """Largest multiple-of-16 size with about resolution**2 pixels and the image's aspect ratio (at most MAX_ASPECT
    to 1: a longer strip trains centre-cropped to that), never larger than the image itself."""
    width, height = min(width, height * MAX_ASPECT), min(height, width * MAX_ASPECT)
    scale = min(1.0, math.sqrt(resolution * resolution / (width * height)))
    w = max(BUCKET_STEP, int(width * scale) // BUCKET_STEP * BUCKET_STEP)
    h = max(BUCKET_STEP, int(height * scale) // BUCKET_STEP * BUCKET_STEP)
    return w, h


def example_buckets(width: int, height: int, resolutions: list[int]) -> list[tuple[int, int]]:
    """The buckets one image trains in, smallest resolution first: one per resolution, an image too small
    for several resolutions only once."""
    return list(dict.fromkeys(bucket_for(width, height, res) for res in sorted(resolutions)))
