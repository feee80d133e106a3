"""Pictures as people see them: EXIF orientation applied, 16- or 32-bit greyscale (a scan, a 16-bit PNG or
TIFF) brought to 8 bits, and the colours of a picture with a colour profile other than sRGB (every iPhone
photo is Display P3; Adobe RGB from cameras; CMYK for print) turned into sRGB.

Pillow's own convert("RGB") of a 16-bit greyscale picture clips every value above 255, so it would be shown,
captioned and trained as an almost white picture. And a Display P3 photo read as if it were sRGB has duller
colours than the browser shows: a LoRA trained on those numbers learns the duller colours, and Z-Image renders
sRGB."""

from __future__ import annotations

import io
import logging
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms, ImageOps

log = logging.getLogger(__name__)

HIGH_DEPTH = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
ORIENTATION, TURNED = 0x0112, {5, 6, 7, 8}  # the EXIF tag, and its values that turn the picture a quarter
PROFILED_MODES = {"RGB", "RGBA", "CMYK", "L", "LA"}  # the modes whose colour profile is applied


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


def upright(image: Image.Image, srgb: bool = True) -> Image.Image:
    """The picture as people see it: turned by its EXIF orientation, in 8 bits (see eight_bit), in sRGB unless
    `srgb` is False (for a caller that shrinks it first: in_srgb after, on fewer pixels)."""
    picture = eight_bit(ImageOps.exif_transpose(image))
    return in_srgb(picture) if srgb else picture


def in_srgb(image: Image.Image) -> Image.Image:
    """`image` with its colours in sRGB (RGB, or RGBA with its alpha as it was) when it carries a colour profile
    of another space; `image` itself without a profile, with an sRGB one, or with one that does not fit its mode
    or cannot be read (logged: the colours stay as they are, the picture is never refused for it)."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in PROFILED_MODES:
        return image
    try:
        source = _profile(profile)
        if source is None:
            return image
        colour = image.convert("RGB") if image.mode == "RGBA" else image.convert("L") if image.mode == "LA" else image
        converted = ImageCms.profileToProfile(colour, source, _srgb(), outputMode="RGB",
                                              renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        log.info("colour profile not applied (%s): the colours are read as sRGB", exc)
        return image
    if "A" in image.getbands():
        converted.putalpha(image.getchannel("A"))
    converted.info = {key: value for key, value in image.info.items() if key != "icc_profile"}
    return converted


@lru_cache(maxsize=16)
def _profile(data: bytes):
    """The profile of these bytes, None for an sRGB one (nothing to convert); a photo set shares a few profiles."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
    description = (ImageCms.getProfileDescription(profile) or "").lower().replace(" ", "")
    return None if "srgb" in description else profile


@lru_cache(maxsize=1)
def _srgb():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def on_white(image: Image.Image) -> Image.Image:
    """RGB, a transparent part on white, as people see a cut-out: not on whatever colour hides under it (black,
    or noise) that a JPEG, a caption model or a preview would otherwise show."""
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        background.info = {key: value for key, value in image.info.items() if key != "transparency"}
        return background
    return image if image.mode == "RGB" else image.convert("RGB")
