"""Crop, rotate and mirror an image of a dataset without leaving the gallery, and put it back as it came.

    POST /api/datasets/<id>/images/<name>/edit   {"op": "rotate", "degrees": 90 | -90 | 180}
                                                 {"op": "flip", "axis": "horizontal" | "vertical"}
                                                 {"op": "crop", "box": [left, top, width, height]}
                                                 {"op": "revert"}
                                                 optional "rev": the image's rev the client sees (409 if it changed)
    GET  /api/datasets/<id>/images/<name>/original   an edited image as it was uploaded

Every edit is one more step in the image's list of edits, and the file is made again from the original
each time, so ten edits cost one re-encoding, not ten. The original is kept in `.originals/` beside the
images until Revert brings it back (or the image is deleted, when it goes to the trash with it). Files are
replaced, never written into: an export's hard link to the old file keeps the old picture.
"""

from __future__ import annotations

import io
import math
import os
import time
from pathlib import Path

from flask import Blueprint, jsonify, send_file
from PIL import Image, ImageOps

from app import context, imaging
from app.images import image_row, viewable
from app.importer import image_record
from app.store import Conflict, Dataset, refresh_flags, rev_of
from studio.atomic import atomic_write_bytes, place_file
from studio.jobs import ACTIVE
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


def render(original: Path, edits: list[dict]) -> Image.Image:
    """The original, as people see it (EXIF orientation applied), with every edit in turn."""
    try:
        with Image.open(original) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            icc = opened.info.get("icc_profile")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # changed on disk since its import
        raise ApiError(f"{original.name} cannot be read as an image any more ({type(exc).__name__}): "
                       "delete it and upload it again.", 422) from None
    for edit in edits:
        image = apply_edit(image, edit)
    if icc:
        image.info["icc_profile"] = icc
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    """The edited picture in its file's own format, at a quality that does not show a second encoding."""
    icc = image.info.get("icc_profile")
    extra = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        if image.mode not in {"RGB", "L", "CMYK"}:
            image = image.convert("RGB")
        extra.update(quality=95)
    elif fmt == "TIFF":
        extra.update(compression="tiff_lzw")  # lossless, as a TIFF is kept for
    elif fmt == "BMP" and image.mode not in {"1", "L", "P", "RGB", "RGBA"}:
        image = image.convert("RGBA" if imaging.has_alpha(image) else "RGB")
    elif fmt in {"WEBP", "HEIF", "AVIF"}:
        if image.mode not in {"RGB", "RGBA"}:
            image = image.convert("RGBA" if imaging.has_alpha(image) else "RGB")
        # the encoders' faster settings: a 12-megapixel HEIC in about 2 s on 2 cores instead of 13
        extra.update(quality=95, **{"WEBP": {"method": 4}, "HEIF": {"enc_params": {"preset": "ultrafast"}},
                                    "AVIF": {"speed": 8}}[fmt])
    buffer = io.BytesIO()
    image.save(buffer, fmt, **extra)
    return buffer.getvalue()


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
            data = encode(render(original if len(edits) > 1 else path, edits), fmt)  # checks the edit first
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
