"""Decode any uploaded image with Pillow and hand llama.cpp only a small, upright RGB JPEG data URI.

llama.cpp's own decoder (stb_image) knows neither WebP nor EXIF orientation nor 16-bit or CMYK
images, and the chat handler would fetch any non-data URL itself, so every image goes through here.
"""

from __future__ import annotations

import base64
import io
import math

from PIL import Image, ImageOps, features

from studio.pixels import eight_bit, in_srgb, on_white


def _allowed_formats() -> tuple[str, ...]:
    """Formats a photo dataset can hold: AVIF where Pillow reads it, HEIC (iPhone photos) with pillow-heif. Others
    (EPS runs Ghostscript, for one) are refused."""
    formats = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]
    if features.check("avif"):
        formats.append("AVIF")
    try:
        import pillow_heif  # type: ignore[import-not-found]

        pillow_heif.register_heif_opener()
        formats.append("HEIF")
    except ImportError:
        pass
    return tuple(formats)


ALLOWED_FORMATS = _allowed_formats()
FORMAT_WORDS = ", ".join({"WEBP": "WebP", "HEIF": "HEIC"}.get(f, f) for f in ALLOWED_FORMATS[:-1]) + \
    f" or {ALLOWED_FORMATS[-1].replace('HEIF', 'HEIC')}"
MAX_ASPECT_RATIO = 200  # Qwen2.5-VL's own image resize refuses anything more elongated
MIN_SIDE = 28  # one merged 2x2 patch of 14 px


class ImageRejected(ValueError):
    """The upload is not a usable image; the message is one sentence for the user (422)."""


def decode_image(data: bytes, max_image_pixels: int, max_pixels: int) -> Image.Image:
    """RGB image, EXIF-upright, at most `max_pixels` pixels; ImageRejected for anything unusable."""
    if not data:
        raise ImageRejected("The image is empty (0 bytes).")
    Image.init()  # registers every plugin once, so `formats` below can name WebP and TIFF
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        # Pillow's own limit (twice Image.MAX_IMAGE_PIXELS) is the one that refused it when MAX_IMAGE_PIXELS is higher
        limit = min(max_image_pixels, 2 * Image.MAX_IMAGE_PIXELS) if Image.MAX_IMAGE_PIXELS else max_image_pixels
        raise ImageRejected(f"The image has more than {limit:,} pixels; send a smaller one.") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected(f"The file is not an image this service can read ({FORMAT_WORDS}).") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("The image has no pixels.")
    if width * height > max_image_pixels:
        raise ImageRejected(f"The image is {width}x{height} pixels, more than the limit of {max_image_pixels:,}; "
                            "send a smaller one.")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageRejected(f"The image is {width}x{height} pixels: one side is more than {MAX_ASPECT_RATIO} times "
                            "the other; crop it first.")
    if width * height > max_pixels and image.format == "JPEG":
        # Decode a JPEG at a reduced scale straight away: a 50 MP photo never exists at full size.
        scale = math.sqrt(max_pixels / (width * height))
        image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
    try:
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except Image.DecompressionBombError:
        raise ImageRejected(f"The image has more than {max_image_pixels:,} pixels; send a smaller one.") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected("The image is truncated or corrupt; upload it again.") from None
    # 16-bit greyscale into 8 bits (not clipped to white), a cut-out on white, a Display P3 photo's colours in sRGB
    return in_srgb(_fit(on_white(eight_bit(image)), max_pixels))


def _fit(image: Image.Image, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        scale = MIN_SIDE / min(width, height)
        image = image.resize((max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))),
                             Image.Resampling.BICUBIC)
    return image


def to_data_uri(image: Image.Image) -> str:
    """JPEG (quality 95, no chroma subsampling) data URI: small, and stb_image decodes it."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def prepare(data: bytes, max_image_pixels: int, max_pixels: int) -> str:
    """Image bytes in, data URI out: what the service and the benchmark's direct calls both use."""
    return to_data_uri(decode_image(data, max_image_pixels, max_pixels))
