"""Pictures as people see them: EXIF orientation applied, and 16- or 32-bit greyscale (a scan, a 16-bit PNG
or TIFF) brought to 8 bits. Pillow's own convert("RGB") of such a picture clips every value above 255, so a
16-bit greyscale photo would be shown, captioned and trained as an almost white picture."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

HIGH_DEPTH = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def eight_bit(image: Image.Image) -> Image.Image:
    """`image` itself, or for a high-depth greyscale one its 8-bit "L" version, scaled (not clipped): 16-bit by
    its full range, 32-bit integers by their largest value when it passes 255, floats of 0..1 by 255."""
    if image.mode not in HIGH_DEPTH:
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    else:
        top = float(np.nanmax(values)) if values.size else 0.0
        scale = 255.0 / top if top > 255 else (255.0 if image.mode == "F" and 0 < top <= 1 else 1.0)
    scaled = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    result = Image.fromarray(scaled, "L")
    result.info.update({key: image.info[key] for key in ("icc_profile", "dpi") if key in image.info})
    return result


def upright(image: Image.Image) -> Image.Image:
    """The picture as people see it: turned by its EXIF orientation, in 8 bits (see eight_bit)."""
    return eight_bit(ImageOps.exif_transpose(image))
