"""Image checks: decode to verify, size, perceptual hash, duplicates, EXIF-oriented thumbnails."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from app.sharpness import sharpness
from studio.pixels import HIGH_DEPTH, ORIENTATION, in_srgb, on_white, upright
from studio.thumbnails import thumbnail_of
from trainer.dataset_checks import has_alpha

log = logging.getLogger(__name__)

BASE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
TRAINER_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp"}  # what the trainer reads; the others are converted on export
# what every browser shows; a HEIC photo only Safari, a TIFF only Safari
BROWSER_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".avif", ".bmp"}
SMALL_SIDE = 512  # images with a shorter side than this train poorly at Z-Image's 1024 px
# what the files of IMAGE_EXTENSIONS may hold, by Pillow's name: an image is decoded by one of these only, whatever
# its name. Pillow knows 40 more (PSD, TGA, EPS through Ghostscript, FITS, ...): a page cannot show them, and their
# decoders are rarely used code that an upload need not reach. JPEG includes a phone's MPO (a JPEG with a second
# picture); GIF and DIB: a browser shows them under any image name. HEIF and AVIF where this Pillow reads them.
DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "DIB", "GIF", "AVIF", "HEIF")
JPEG_MAX_SIDE = 65_500  # the longest side a JPEG can have
NEAR_DUPLICATE_BITS = 4  # of 64 dHash bits


def _optional_extensions() -> set[str]:
    """HEIC/AVIF where Pillow reads them: AVIF in Pillow's own build, HEIC (iPhone photos) with pillow-heif."""
    extra = set()
    try:
        if features.check("avif"):
            extra.add(".avif")
    except Exception:  # feature probing must never stop the service
        log.debug("AVIF probe failed", exc_info=True)
    try:
        import pillow_heif  # type: ignore[import-not-found]

        pillow_heif.register_heif_opener()
        extra.update({".heic", ".heif"})
    except ImportError:
        pass
    return extra


IMAGE_EXTENSIONS = BASE_EXTENSIONS | _optional_extensions()


class ImageRejected(ValueError):
    """The file is not an image this studio accepts; the message says why in one sentence."""


@dataclass
class ImageInfo:
    width: int
    height: int
    sha256: str
    dhash: str
    bytes: int
    sharpness: float | None = None
    thumbnail: bytes | None = None  # made from the same decoding, when asked (not kept in dataset.json)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def shown_by_browsers(name: str) -> bool:
    """Whether a page can show this file as it is (else it gets a JPEG of it: studio.thumbnails.view_bytes)."""
    return os.path.splitext(name)[1].lower() in BROWSER_EXTENSIONS


def shown_upright_by_browsers(path: Path) -> bool:
    """Whether a page shows this file as it is and upright (else it needs the JPEG of studio.thumbnails.view_bytes):
    shown_by_browsers, and not a WebP turned by its EXIF orientation, which Chromium ignores in a WebP (it shows
    the picture on its side while the studio measures it upright, so a crop box would lie across it)."""
    if not shown_by_browsers(path.name):
        return False
    if path.suffix.lower() != ".webp":
        return True
    try:
        with Image.open(path) as image:  # the header and the EXIF chunk only
            return image.getexif().get(ORIENTATION, 1) in (1, None)
    except Exception:  # Pillow raises many types for broken files; the page shows what it can
        return True


def training_copy(source: Path, folder: Path, stem: str) -> tuple[Path, bool]:
    """(`folder/stem.<ext>`, whether it holds the bytes of `source`) for the trainer: a JPEG, PNG or WebP as
    it is (a hard link where the disk allows, the dataset's file is never written into); any other format
    (HEIC, AVIF, TIFF, BMP) converted, upright: a JPEG at quality 95 (a PNG of a 12-megapixel photo is 4 times
    larger and slower to write), a PNG when it has transparency (which `alpha_mask` trains with). A 16-bit
    greyscale PNG becomes an 8-bit PNG (see studio.pixels)."""
    ext = source.suffix.lower()
    if ext in TRAINER_EXTENSIONS and not (ext == ".png" and _high_depth(source)):
        target = folder / f"{stem}{ext}"
        try:
            os.link(source, target)  # same disk: no copy
        except OSError:
            shutil.copy2(source, target)
        return target, True
    with Image.open(source) as image:
        picture = upright(image)
        if has_alpha(picture) or ext == ".png":
            target = folder / f"{stem}.png"
            picture.convert("RGBA" if has_alpha(picture) else "RGB").save(target)
        else:
            target = folder / f"{stem}.jpg"
            picture.convert("RGB").save(target, "JPEG", quality=95, subsampling=0)
    return target, False


def _high_depth(path: Path) -> bool:
    with Image.open(path) as image:  # reads the header only
        return image.mode in HIGH_DEPTH


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dhash(image: Image.Image) -> str:
    """64-bit difference hash: robust to resizing and recompression, cheap to compare."""
    small = image.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def inspect_image(path: Path, max_pixels: int, thumbnail: bool = False) -> ImageInfo:
    """Decode the whole file (a truncated or fake image fails here) and measure it. `thumbnail`: also make the
    gallery's thumbnail from the same decoding, unless it is a JPEG (which studio.thumbnails decodes at a
    reduced scale, faster than shrinking the whole picture); a HEIC photo is decoded once instead of twice."""
    size = path.stat().st_size
    thumb = None
    if size == 0:
        raise ImageRejected("the file is empty (0 bytes)")
    other = None
    try:
        with warnings.catch_warnings():
            # the limit is max_pixels, checked below: Pillow's own warning (at 89 million pixels) must not refuse
            # a 100-megapixel photo that a raised MAX_IMAGE_PIXELS lets in
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_decoded_formats()) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"the image is {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,} (MAX_IMAGE_PIXELS)")
                image.load()
                oriented = upright(image, srgb=False)  # colours do not change sharpness or likeness
                width, height = oriented.size
                gray = oriented.convert("L")  # once, for both
                hashed = dhash(gray)
                sharp = sharpness(gray)
                if thumbnail and image.format != "JPEG":
                    thumb = _thumbnail_of(oriented, path)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        other = _other_format(path)
        if other is None:
            raise ImageRejected("the file could not be decoded as an image (UnidentifiedImageError)") from None
    except Image.DecompressionBombError:  # refused on opening: over twice Pillow's own limit
        opens = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageRejected(f"the image has more pixels than the limit of {max_pixels:,} (MAX_IMAGE_PIXELS)"
                            if max_pixels <= opens else
                            f"the image has more pixels than this studio can open ({opens:,})") from None
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageRejected(f"the file could not be decoded as an image ({type(exc).__name__})") from None
    if other is not None:  # said outside the handler: the sentence is the studio's own (importer.plain_reason)
        raise ImageRejected(f"the file holds a {other} image, which a page cannot show: save it as PNG or JPEG "
                            "and upload it again")
    return ImageInfo(width=width, height=height, sha256=_sha256(path), dhash=hashed, bytes=size, sharpness=sharp,
                     thumbnail=thumb)


def _decoded_formats() -> list[str]:
    """DECODED_FORMATS that this Pillow has a plugin for (HEIF only with pillow-heif)."""
    Image.init()
    return [name for name in DECODED_FORMATS if name in Image.OPEN]


def _other_format(path: Path) -> str | None:
    """Pillow's name for the kind of image the file holds when none of DECODED_FORMATS took it (a PSD or a TGA
    named .jpg), read from its header only; None for what is no image at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:  # the header only: nothing is decoded
                return image.format if image.format not in DECODED_FORMATS else None
    except Exception:  # no image at all, or a damaged one: inspect_image says which
        return None


def _thumbnail_of(picture: Image.Image, path: Path) -> bytes | None:
    try:
        return thumbnail_of(picture)
    except Exception:  # the gallery makes a missing thumbnail when it is asked for
        log.warning("thumbnail failed for %s", path.name, exc_info=True)
        return None


def encode_for_caption(path: Path, max_pixels: int) -> bytes:
    """JPEG bytes of the image, oriented, downscaled to about `max_pixels` (saves upload time), in sRGB."""
    with Image.open(path) as image:
        oriented = upright(image, srgb=False)
        pixels = oriented.width * oriented.height
        # a JPEG holds at most JPEG_MAX_SIDE a side: a 70,000 x 10 strip is made smaller though it has few pixels
        scale = min((max_pixels / pixels) ** 0.5, JPEG_MAX_SIDE / max(oriented.size))
        if scale < 1:
            if oriented.mode not in {"RGB", "RGBA", "L", "LA", "CMYK"}:
                oriented = oriented.convert("RGBA" if has_alpha(oriented) else "RGB")
            oriented = oriented.resize((max(1, int(oriented.width * scale)), max(1, int(oriented.height * scale))),
                                       Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        on_white(in_srgb(oriented)).save(buffer, "JPEG", quality=92)  # in sRGB on the pixels sent, not the photo
    return buffer.getvalue()


def small_flag(width: int, height: int) -> dict | None:
    """{"width", "height", "min_side"} for an image whose short side is below SMALL_SIDE, else None."""
    if min(width, height) >= SMALL_SIDE:
        return None
    return {"width": width, "height": height, "min_side": SMALL_SIDE}


def duplicate_flags(records: dict[str, dict]) -> dict[str, dict]:
    """name -> {"duplicate_of": name} for exact copies and {"similar_to": name} for near-duplicates.

    The first image added of each group is kept unflagged, so one click removes only the later copies.
    """
    names = sorted(records, key=lambda n: (records[n].get("added_at", 0), n))
    flags: dict[str, dict] = {}
    first_by_sha: dict[str, str] = {}
    for name in names:
        sha = records[name].get("sha256")
        if sha in first_by_sha:
            flags[name] = {"duplicate_of": first_by_sha[sha]}
        elif sha:
            first_by_sha[sha] = name
    unique = [n for n in names if n not in flags and records[n].get("dhash")]
    if len(unique) < 2:
        return flags
    hashes = np.array([int(records[n]["dhash"], 16) for n in unique], dtype=np.uint64)
    for i in range(1, len(unique)):
        distances = np.bitwise_count(hashes[:i] ^ hashes[i])
        close = np.nonzero(distances <= NEAR_DUPLICATE_BITS)[0]
        if close.size:
            flags[unique[i]] = {"similar_to": unique[int(close[0])]}
    return flags
