"""Crop, rotate and mirror an image of a dataset without leaving the gallery, and put it back as it came.

    POST /api/datasets/<id>/images/<name>/edit   {"op": "rotate", "degrees": 90 | -90 | 180}
                                                 {"op": "flip", "axis": "horizontal" | "vertical"}
                                                 {"op": "crop", "box": [left, top, width, height]}
                                                 {"op": "revert"}
                                                 optional "rev": the image's rev the client sees (409 if it changed)
    GET  /api/datasets/<id>/images/<name>/original   an edited image as it was uploaded

Every edit is one more step in the image's list of edits, and the file is made again from the original
each time, so ten edits cost one re-encoding, not ten. It is written as its original was: a JPEG with the same
quantization tables (its quality) and chroma subsampling, a lossless WebP lossless again, the colour profile and
the EXIF (less the orientation, which the edit has applied) kept, and every frame of an animation (APNG, animated
WebP or AVIF, a TIFF's pages) edited, with its durations and loop count. The original is kept in `.originals/`
beside the images until Revert brings it back (or the image is deleted, when it goes to the trash with it). Files
are replaced, never written into: an export's hard link to the old file keeps the old picture.
"""

from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import Blueprint, jsonify, send_file
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin

from app import context, imaging
from app.images import image_row, viewable
from app.importer import image_record
from app.store import Conflict, Dataset, refresh_flags, rev_of
from studio.atomic import atomic_write_bytes, place_file
from studio.jobs import ACTIVE
from studio.pixels import ORIENTATION
from studio.thumbnails import UnreadableImage, cached_picture, view_bytes
from studio.web import ApiError, json_body

bp = Blueprint("image_edits", __name__)

MIN_SIDE = 64  # a crop smaller than this is a slip of the mouse, not a picture to train on
MAX_EDITS = 30
# each format as it is saved again; HEIC and AVIF where this Pillow reads them (app.imaging)
EDITABLE = {ext: fmt for ext, fmt in {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}.items() if ext in imaging.IMAGE_EXTENSIONS}
FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "HEIF": "HEIC", "AVIF": "AVIF", "TIFF": "TIFF",
                "BMP": "BMP"}
ROTATIONS = {90: Image.Transpose.ROTATE_270, -90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}
FLIPS = {"horizontal": Image.Transpose.FLIP_LEFT_RIGHT, "vertical": Image.Transpose.FLIP_TOP_BOTTOM}
EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "HEIF", "AVIF"}  # those whose Pillow writer takes an EXIF block as it is
EXIF_IFD, EXIF_WIDTH, EXIF_HEIGHT = 0x8769, 0xA002, 0xA003
XMP_FORMATS = {"JPEG", "WEBP", "TIFF"}  # those whose Pillow writer takes an XMP packet (a PNG's is a text chunk)
JPEG_MARKER_BYTES = 65533  # the most an APP1 marker holds: a longer EXIF block is left out, not the picture


def parse_edit(body: dict) -> dict:
    """The edit a request asks for, checked; raises ApiError with one sentence when it makes no sense."""
    op = body.get("op")
    if op == "rotate":
        degrees = body.get("degrees")
        if not isinstance(degrees, int) or isinstance(degrees, bool) or degrees not in ROTATIONS:
            raise ApiError("'degrees' must be 90 (clockwise), -90 (counter-clockwise) or 180.", 422)
        return {"op": "rotate", "degrees": degrees}
    if op == "flip":
        axis = body.get("axis", "horizontal")
        if not isinstance(axis, str) or axis not in FLIPS:
            raise ApiError("'axis' must be 'horizontal' or 'vertical'.", 422)
        return {"op": "flip", "axis": axis}
    if op == "crop":
        box = body.get("box")
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
            raise ApiError("'box' must be [left, top, width, height] in pixels.", 422)
        return {"op": "crop", "box": [round(v) for v in box]}
    if op == "revert":
        return {"op": "revert"}
    raise ApiError("'op' must be 'crop', 'rotate', 'flip' or 'revert'.", 422)


def apply_edit(image: Image.Image, edit: dict) -> Image.Image:
    if edit["op"] == "rotate":
        return image.transpose(ROTATIONS[edit["degrees"]])
    if edit["op"] == "flip":
        return image.transpose(FLIPS[edit["axis"]])
    left, top, width, height = edit["box"]
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ApiError(f"The crop is {width}×{height} pixels: keep at least {MIN_SIDE}×{MIN_SIDE}.", 422)
    if left < 0 or top < 0 or left + width > image.width or top + height > image.height:
        raise ApiError(f"The crop [{left}, {top}, {width}, {height}] reaches outside the "
                       f"{image.width}×{image.height} image.", 422)
    return image.crop((left, top, left + width, top + height))


@dataclass
class Picture:
    """An image as people see it (EXIF orientation applied) and how its file was written, to write the edited
    picture the same way."""

    frames: list[Image.Image]  # one for a still picture; each frame of an animation as it shows, or each page
    icc: bytes | None = None
    exif: Image.Exif | None = None  # without the orientation
    jpeg: dict = field(default_factory=dict)  # a JPEG's quantization tables and chroma subsampling
    lossless: bool = False  # a lossless WebP
    animation: dict = field(default_factory=dict)  # what the writer takes to make the frames an animation again
    xmp: bytes | None = None  # the XMP packet (rights, credits, keywords), its orientation applied as EXIF's is
    text: dict = field(default_factory=dict)  # a PNG's text chunks (a generator's prompt and settings, XMP)


def render(original: Path, edits: list[dict], max_pixels: int) -> Picture:
    """The original, as people see it, with every edit in turn applied to every frame."""
    try:
        with Image.open(original) as opened:
            frames = _frames(opened, original.name, max_pixels)
            picture = Picture(frames, icc=opened.info.get("icc_profile"), exif=_exif(frames[0]),
                              jpeg=_jpeg_settings(opened), animation=_animation(opened, frames),
                              xmp=_xmp(frames[0]), text=_png_text(opened, frames[0]))
            if opened.format == "WEBP":
                picture.lossless = webp_is_lossless(original)
    except ApiError:
        raise
    except (OSError, ValueError, EOFError, Image.DecompressionBombError) as exc:  # changed on disk since its import
        raise ApiError(f"{original.name} cannot be read as an image any more ({type(exc).__name__}): "
                       "delete it and upload it again.", 422) from None
    if len({frame.size for frame in frames}) > 1 and any(edit["op"] == "crop" for edit in edits):
        raise ApiError(f"The pages of {original.name} are not all the same size, so one crop cannot be applied to "
                       "every page: rotate or mirror it here, or crop it in another program.", 422)
    for edit in edits:
        picture.frames = [apply_edit(frame, edit) for frame in picture.frames]
    if picture.exif is not None:
        _measure(picture.exif, picture.frames[0])
    return picture


def _frames(opened: Image.Image, name: str, max_pixels: int) -> list[Image.Image]:
    """Every frame, upright. An MPO's further pictures (a phone's depth or gain map of the photo as it was) are
    not frames: only its photo is kept, as before. An animation is decoded whole, so MAX_IMAGE_PIXELS counts
    the pixels of all its frames."""
    count = 1 if opened.format == "MPO" else getattr(opened, "n_frames", 1)
    width, height = opened.size
    if count > 1:
        _within_limit(name, count, width, height, count * width * height, max_pixels)
        Image.init()
        if opened.format not in Image.SAVE_ALL:
            raise ApiError(f"{name} has {count} frames and this server cannot write them all again, so an edit "
                           "would keep only the first: edit it in another program.", 422)
    frames, pixels = [], 0
    for index in range(count):
        opened.seek(index)
        pixels += opened.width * opened.height  # a TIFF's pages may each have their own size
        if count > 1:
            _within_limit(name, count, width, height, pixels, max_pixels)
        opened.load()
        frames.append(ImageOps.exif_transpose(opened))
    return frames


def _within_limit(name: str, count: int, width: int, height: int, pixels: int, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise ApiError(f"{name} has {count} frames of {width}×{height}, at least {pixels:,} pixels in all: more "
                       f"than the limit of {max_pixels:,} (MAX_IMAGE_PIXELS) that an edit decodes at once, so it "
                       "cannot be edited here.", 422)


def _xmp(frame: Image.Image) -> bytes | None:
    """The picture's XMP packet, as exif_transpose left it (without a tiff:Orientation it has applied)."""
    xmp = frame.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return xmp if isinstance(xmp, bytes) and xmp else None


def _png_text(opened: Image.Image, frame: Image.Image) -> dict:
    """A PNG's text chunks ({} for other formats): what generators write there (the prompt and settings of a
    picture made with Stable Diffusion or ComfyUI) stays with the edited picture, its XMP as exif_transpose left it."""
    if opened.format != "PNG":
        return {}
    return {key: frame.info.get(key, value) for key, value in opened.text.items() if isinstance(value, str)}


def _exif(frame: Image.Image) -> Image.Exif | None:
    """The EXIF block of the picture, without the orientation (exif_transpose has applied it; an upright 1 says
    nothing). Written again from its tags, which leaves out the embedded thumbnail of the picture as it was."""
    data = frame.info.get("exif")
    if not data:
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:  # Pillow raises many types for a damaged block; the picture goes without it
        return None
    exif.pop(ORIENTATION, None)
    return exif


def _measure(exif: Image.Exif, frame: Image.Image) -> None:
    """The EXIF's own record of the picture's size, where it has one, made that of the edited picture."""
    sub = exif.get_ifd(EXIF_IFD)
    for tag, value in ((EXIF_WIDTH, frame.width), (EXIF_HEIGHT, frame.height)):
        if tag in sub:
            sub[tag] = value


def _jpeg_settings(opened: Image.Image) -> dict:
    """A JPEG's quantization tables (its quality, which quality="keep" keeps only for an unchanged file) and
    chroma subsampling, so an edit costs no more than one more encoding at the quality it came with."""
    if not isinstance(opened, JpegImagePlugin.JpegImageFile) or not getattr(opened, "quantization", None):
        return {}
    settings = {"qtables": opened.quantization}
    sampling = JpegImagePlugin.get_sampling(opened)
    if sampling != -1:  # -1: not three colour layers (greyscale, CMYK), where there is nothing to subsample
        settings["subsampling"] = sampling
    return settings


def _animation(opened: Image.Image, frames: list[Image.Image]) -> dict:
    """The writer's arguments that keep an animation's timing. Pillow hands each frame over as it shows, drawn
    over the ones before, so each is written whole (APNG: disposal none, blend source): the source's own
    disposal and blend, meant for its partial frames, would draw these whole frames wrongly."""
    if len(frames) < 2:
        return {}
    animation: dict = {}
    shown = frames
    if opened.format == "PNG":
        # an APNG's default image (its first frame to a viewer without APNG) can be left out of the animation
        default_image = bool(opened.info.get("default_image"))
        animation.update(disposal=PngImagePlugin.Disposal.OP_NONE, blend=PngImagePlugin.Blend.OP_SOURCE,
                         default_image=default_image)
        shown = frames[1:] if default_image else frames  # the writer's durations are those of the animation
    durations = [frame.info.get("duration") for frame in shown]
    if all(duration is not None for duration in durations):
        animation["duration"] = durations
    if "loop" in opened.info:
        animation["loop"] = opened.info["loop"]
    if opened.format == "WEBP" and "background" in opened.info:
        animation["background"] = opened.info["background"]
    return animation


def webp_is_lossless(path: Path) -> bool:
    """Whether a WebP holds lossless (VP8L) pictures: the simple file's one, or any frame of an extended one (a
    lossless frame must not lose what it kept). Pillow does not say; the chunk headers do."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return False
            while len(chunk := handle.read(8)) == 8:
                tag, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if tag == b"VP8L":
                    return True
                if tag == b"ANMF" and size >= 24:  # a frame: 16 bytes of placement, then its own chunks
                    handle.seek(16, os.SEEK_CUR)
                    if handle.read(4) == b"VP8L":
                        return True
                    size -= 20
                handle.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to an even length
    except OSError:
        return False
    return False


def encode(picture: Picture, fmt: str) -> bytes:
    """The edited picture in its file's own format, written as its original was (see Picture); where the
    original says nothing of its quality (a WebP, HEIC or AVIF), at one that does not show a second encoding."""
    frames = picture.frames
    extra: dict = {"icc_profile": picture.icc} if picture.icc else {}
    exif = picture.exif.tobytes() if picture.exif is not None and len(picture.exif) else None
    if exif and fmt in EXIF_FORMATS and not (fmt == "JPEG" and len(exif) > JPEG_MARKER_BYTES):
        extra["exif"] = exif
    if picture.xmp and fmt in XMP_FORMATS and not (fmt == "JPEG" and len(picture.xmp) > JPEG_MARKER_BYTES - 29):
        # (a JPEG's APP1 marker holds the XMP name, 29 bytes, then the packet; a TIFF's is its tag 700)
        extra.update({"tiffinfo": {700: picture.xmp}} if fmt == "TIFF" else {"xmp": picture.xmp})
    if fmt == "PNG" and picture.text:
        extra["pnginfo"] = _png_info(picture.text)
    if fmt == "JPEG":
        frames = [frame if frame.mode in {"RGB", "L", "CMYK"} else frame.convert("RGB") for frame in frames]
        extra.update(picture.jpeg or {"quality": 95, "subsampling": 0})
    elif fmt == "TIFF":
        extra.update(compression="tiff_lzw")  # lossless, as a TIFF is kept for
    elif fmt == "BMP":
        frames = [frame if frame.mode in {"1", "L", "P", "RGB", "RGBA"}
                  else frame.convert("RGBA" if imaging.has_alpha(frame) else "RGB") for frame in frames]
    elif fmt in {"WEBP", "HEIF", "AVIF"}:
        mode = "RGBA" if any(imaging.has_alpha(frame) for frame in frames) else "RGB"
        frames = [frame if frame.mode == mode else frame.convert(mode) for frame in frames]
        # the encoders' faster settings: a 12-megapixel HEIC in about 2 s on 2 cores instead of 13
        extra.update({"WEBP": {"method": 4}, "HEIF": {"enc_params": {"preset": "ultrafast"}},
                      "AVIF": {"speed": 8}}[fmt])
        if picture.lossless:  # lossless again, `exact`: the colour under transparent pixels kept too, as it was
            extra.update(lossless=True, exact=True)
        else:
            extra.update(quality=95)
    if len(frames) > 1:
        extra.update(save_all=True, append_images=frames[1:], **picture.animation)
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, **extra)
    return buffer.getvalue()


def _png_info(text: dict) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:  # only international text chunks hold more than Latin-1
            info.add_itxt(key, value)
            continue
        if key == "XML:com.adobe.xmp":
            info.add_itxt(key, value)  # where readers look for XMP in a PNG
        else:
            info.add_text(key, value)
    return info


def edit_image(dataset: Dataset, name: str, edit: dict, rev: str | None = None) -> dict:
    """Applies one edit (or reverts) under the dataset lock; returns the image's new gallery row."""
    dataset.image_path(name)  # a name that is not an image, or reaches outside the dataset: 400
    fmt = EDITABLE.get(os.path.splitext(name)[1].lower())
    if fmt is None:
        known = list(dict.fromkeys(FORMAT_NAMES[f] for f in EDITABLE.values()))
        raise ApiError(f"Only {', '.join(known[:-1])} and {known[-1]} images can be cropped or rotated here.", 422)
    export = context.jobs().latest("export", dataset.id)
    if export and export.status in ACTIVE:
        raise ApiError("An export of this dataset is running: edit the image when it is done.", 409)
    with dataset.lock():
        path = dataset.require_image(name)
        meta = dataset.meta()
        record = meta["images"].get(name)
        if record is None:
            raise ApiError(f"{name} is still being imported; edit it in a moment.", 409)
        if rev and rev != rev_of(record):
            raise Conflict(f"{name} changed in another tab or window: it now shows the new version.",
                           current=image_row(dataset, name, record, dataset.read_caption(name)))
        original = dataset.original_path(name)
        edits = list(record.get("edits") or []) if original.is_file() else []
        if edit["op"] == "revert":
            if not record.get("edits"):
                raise ApiError(f"{name} has no edits to undo.", 409)
            if not edits:
                raise ApiError(f"The original of {name} is no longer kept, so it cannot be brought back.", 409)
            os.replace(original, path)
            edits = []
        else:
            if len(edits) >= MAX_EDITS:
                raise ApiError(f"{name} has {MAX_EDITS} edits already: revert to the original and start again.", 409)
            edits.append(edit)
            source = original if len(edits) > 1 else path
            data = encode(render(source, edits, context.settings().max_image_pixels), fmt)  # checks the edit first
            if len(edits) == 1:  # the first edit keeps the file as it came
                if not original.is_file():  # one there already was kept by an edit cut off before it was
                    place_file(path, original)  # recorded (a crash): it is the file as it came, never replaced
                record.setdefault("original_size", [record.get("width"), record.get("height")])
            atomic_write_bytes(path, data)
        _record(dataset, name, record, edits)
        refresh_flags(meta)
        dataset.save_meta(meta)
        dataset.forget_previews(name)
        return image_row(dataset, name, record, dataset.read_caption(name))


def _record(dataset: Dataset, name: str, record: dict, edits: list[dict]) -> None:
    info = imaging.inspect_image(dataset.image_path(name), context.settings().max_image_pixels)
    record.update(image_record(info, record.get("added_at") or time.time()))  # what an import records
    if edits:
        record["edits"] = edits
        record["edited_at"] = time.time()
    else:
        for key in ("edits", "edited_at", "original_size"):
            record.pop(key, None)


@bp.get("/api/datasets/<dataset_id>/images/<name>/original")
def original(dataset_id: str, name: str):
    """An edited image's file as it was uploaded (404 for an image without edits), to compare with."""
    dataset = context.dataset(dataset_id)
    dataset.require_image(name)
    record = dataset.meta()["images"].get(name) or {}
    kept = dataset.original_path(name)
    if not record.get("edits") or not kept.is_file():
        raise ApiError(f"{name} has no edits: it is its original.", 404)
    view = dataset.view_path(name, original=True)
    if imaging.shown_by_browsers(name) and not imaging.shown_upright_by_browsers(kept):  # a turned WebP
        try:
            return send_file(cached_picture(kept, view, view_bytes), conditional=True, max_age=0)
        except UnreadableImage:
            raise ApiError(f"The original of {name} cannot be shown.", 404) from None
    return send_file(viewable(kept, view), conditional=True, max_age=0)


@bp.post("/api/datasets/<dataset_id>/images/<name>/edit")
def edit(dataset_id: str, name: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    rev = body.get("rev")
    if rev is not None and not isinstance(rev, str):
        raise ApiError("'rev' must be the image's rev from the image list.", 422)
    return jsonify(edit_image(dataset, name, parse_edit(body), rev))
