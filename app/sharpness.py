"""How sharp an image is where it is sharpest: out-of-focus, motion-blurred and upscaled pictures teach a LoRA
their softness, so the gallery flags them ("soft") for a look before training.

The score is the Laplacian's variance over the picture's own variance (so contrast and brightness do not
count), per tile of a 12 x 12 grid at up to 1024 px (the size Z-Image trains at), taken at the 98th
percentile: a small sharp subject before a blurred background (bokeh) still counts as sharp; flat tiles
(sky, a plain wall) are left out. Measured on photographs and drawings, each as it is, blurred and upscaled:

    as it is                 1.9 - 8.3      Gaussian blur sigma 1 at 1024 px   0.08 - 0.53
    Gaussian blur sigma 2    0.02 - 0.06    upscaled from 256 px to 1024 px    0.03 - 0.58
    JPEG quality 40          1.7 - 8.3      a 10%-wide sharp subject, rest blurred  0.54

SOFT_BELOW = 0.1 flags what is clearly soft and leaves mild softness alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SOFT_BELOW = 0.1
LONG_SIDE = 1024
GRID = 12
PERCENTILE = 98
FLAT_STD = 4.0  # a tile with less contrast than this (of 255) has no edges to judge


def sharpness(image: Image.Image) -> float | None:
    """The score (higher is sharper), or None for a picture with no contrast anywhere (nothing to judge).
    Takes the picture in any mode; a grayscale one ("L") saves a conversion."""
    gray = image if image.mode == "L" else image.convert("L")
    if max(gray.size) >= 2 * LONG_SIDE:
        gray = gray.reduce(max(gray.size) // LONG_SIDE)  # a box filter by a whole factor: fast, and not below
    if max(gray.size) > LONG_SIDE:
        scale = LONG_SIDE / max(gray.size)
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
                           Image.Resampling.BOX)
    pixels = np.asarray(gray, dtype=np.float32)
    if min(pixels.shape) < 3 * GRID:
        return None
    core = pixels[1:-1, 1:-1]
    laplacian = pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1] - 4 * core
    rows, cols = core.shape[0] // GRID, core.shape[1] // GRID  # equal tiles; a few edge pixels left over

    def per_tile(values):
        return values[:rows * GRID, :cols * GRID].reshape(GRID, rows, GRID, cols)

    contrast = per_tile(core).var(axis=(1, 3))
    scores = per_tile(laplacian).var(axis=(1, 3)) / (contrast + 25.0)
    judged = scores[contrast >= FLAT_STD ** 2]
    return round(float(np.percentile(judged, PERCENTILE)), 4) if judged.size else None


def soft_flag(score: float | None) -> dict | None:
    """{"sharpness", "below"} for an image that looks soft, else None (also for images never measured)."""
    if score is None or score >= SOFT_BELOW:
        return None
    return {"sharpness": score, "below": SOFT_BELOW}
