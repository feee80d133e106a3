"""Small previews for pages that show many pictures at once (dataset galleries and strips, training
previews, library cards): a WebP of a few KB in place of a full-size PNG of 1-2 MB, which matters
behind RunPod's proxy; and the full-size view of a picture browsers cannot show (HEIC). Each is made on
first request, kept (in a hidden folder beside its picture, or in the workspace cache) and made again when
its picture changes."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from studio.atomic import atomic_write_bytes
from studio.pixels import in_srgb, on_white, upright

log = logging.getLogger(__name__)

GALLERY_SIZE = 384  # the dataset gallery's tiles
PREVIEW_SIZE = 512  # training previews: about 250 CSS px wide, sharp on a 2x screen


def thumbnail_bytes(source: Path, size: int = GALLERY_SIZE) -> bytes:
    """A WebP fitting size x size, EXIF orientation applied. Raises what Pillow raises for a bad file."""
    with Image.open(source) as image:
        image.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale, much faster
        return thumbnail_of(upright(image, srgb=False), size)


def thumbnail_of(picture: Image.Image, size: int = GALLERY_SIZE) -> bytes:
    """The WebP thumbnail of a picture already decoded and upright (studio.pixels.upright, srgb=False), for a
    caller that decoded it anyway; `picture` is left as it is."""
    small = picture.copy()
    small.thumbnail((size, size), Image.Resampling.LANCZOS)
    small = in_srgb(small)  # on the few pixels of the thumbnail
    if small.mode not in {"RGB", "RGBA"}:
        small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
    buffer = io.BytesIO()
    small.save(buffer, "WEBP", quality=82, method=2)
    return buffer.getvalue()


def view_bytes(source: Path) -> bytes:
    """The whole picture as a JPEG any browser shows (for a HEIC photo, which only Safari shows), upright,
    a transparent part on white. Raises what Pillow raises for a bad file."""
    with Image.open(source) as image:
        buffer = io.BytesIO()
        on_white(upright(image)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


class UnreadableImage(ValueError):
    """The source cannot be decoded as an image."""


def cached_thumbnail(source: Path, target: Path, size: int = GALLERY_SIZE) -> Path:
    """`target`, (re)made from `source` when missing or older than it, written atomically; `source` itself
    when the thumbnail cannot be stored (a full disk): the picture still shows, only larger. Raises
    UnreadableImage for a file that cannot be decoded."""
    return cached_picture(source, target, lambda path: thumbnail_bytes(path, size))


def store_preview(target: Path, data: bytes, made_from: int) -> None:
    """Write a preview of a picture whose mtime (ns) was `made_from`, stamped with it (cached_picture's test)."""
    atomic_write_bytes(target, data)
    os.utime(target, ns=(made_from, made_from))


def cached_picture(source: Path, target: Path, make: Callable[[Path], bytes]) -> Path:
    """`target`, (re)made as `make(source)` unless it was made from `source` as it is now (see cached_thumbnail).
    A preview carries the time of the picture it was made from: one made from a picture an edit replaced while it
    was decoded, or from a file Revert put back with its older time, is not taken for the picture's now."""
    made_from = source.stat().st_mtime_ns
    if target.is_file() and target.stat().st_mtime_ns == made_from:
        return target
    try:
        data = make(source)
    except Exception as exc:  # Pillow raises many types for broken files
        raise UnreadableImage(f"{source.name} cannot be read as an image ({type(exc).__name__})") from exc
    try:
        store_preview(target, data, made_from)
    except OSError as exc:
        log.warning("could not store the preview %s (%s): serving the image itself", target, exc)
        return source
    return target
