"""Images of a dataset: the paged list with filters, the files, thumbnails, and removal."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, jsonify, request, send_file
from werkzeug.exceptions import NotFound as HttpNotFound

from app import context, imaging, trash
from app.store import natural_key, rev_of
from studio.text import over_caption_limit
from studio.thumbnails import UnreadableImage, cached_picture, cached_thumbnail, view_bytes
from studio.web import ApiError, int_arg, json_body

bp = Blueprint("images", __name__)
FILTERS = {"all", "uncaptioned", "captioned", "flagged", "duplicates", "small", "soft", "long"}
MAX_LIMIT = 500
# the gallery's orders: by name, the newest upload first, the softest first, the smallest first
SORTS = {
    "name": lambda name, record: (0, natural_key(name)),
    "newest": lambda name, record: (-(record.get("added_at") or 0), natural_key(name)),
    "softest": lambda name, record: (record.get("sharpness") is None, record.get("sharpness") or 0, natural_key(name)),
    "smallest": lambda name, record: (min(record.get("width") or 0, record.get("height") or 0), natural_key(name)),
}


def _matches(kind: str, caption: str | None, flags: dict) -> bool:
    has_caption = bool(caption and caption.strip())
    if kind == "uncaptioned":
        return not has_caption
    if kind == "captioned":
        return has_caption
    if kind == "flagged":
        return bool(flags)
    if kind == "duplicates":
        return "duplicate_of" in flags or "similar_to" in flags
    if kind == "long":  # longer than the text encoder reads
        return has_caption and over_caption_limit(caption) is not None
    if kind in ("small", "soft"):
        return bool(flags.get(kind))
    return True


@bp.get("/api/datasets/<dataset_id>/images")
def list_images(dataset_id: str):
    dataset = context.dataset(dataset_id)
    kind = request.args.get("filter") or "all"
    if kind not in FILTERS:
        raise ApiError(f"Unknown filter {kind!r}: use one of {', '.join(sorted(FILTERS))}.", 400)
    order = request.args.get("sort") or "name"
    if order not in SORTS:
        raise ApiError(f"Unknown sort {order!r}: use one of {', '.join(SORTS)}.", 400)
    query = (request.args.get("q") or "").strip().casefold()
    offset = int_arg("offset", 0, 0, 10**9)
    limit = int_arg("limit", 100, 1, MAX_LIMIT)
    names_only = int_arg("names", 0, 0, 1)  # 1: every name the filter and search show (Select all), no rows
    records = dataset.meta()["images"]
    captions = dataset.read_captions(records)
    rows = []
    counts = {"all": 0, "uncaptioned": 0, "flagged": 0}
    for name in sorted(records, key=lambda n: SORTS[order](n, records[n])):
        caption, flags = captions[name], records[name].get("flags") or {}
        counts["all"] += 1
        counts["uncaptioned"] += not (caption and caption.strip())
        counts["flagged"] += bool(flags)
        if not _matches(kind, caption, flags):
            continue
        if query and query not in (caption or "").casefold() and query not in name.casefold():
            continue
        rows.append(name)
    if names_only:
        return jsonify({"total": len(rows), "names": rows, "counts": counts})
    images = [image_row(dataset, name, records[name], captions[name]) for name in rows[offset:offset + limit]]
    return jsonify({"total": len(rows), "offset": offset, "limit": limit, "images": images, "counts": counts})


def image_row(dataset, name: str, record: dict, caption: str | None) -> dict:
    """One image as the gallery lists it; `rev` changes whenever the file does (crop, rotate, revert)."""
    edits = record.get("edits") or []
    return {
        "name": name, "width": record.get("width"), "height": record.get("height"), "bytes": record.get("bytes"),
        "caption": caption or "", "has_caption": caption is not None,
        "version": dataset.caption_version(name), "flags": record.get("flags") or {},
        "rev": rev_of(record), "edits": describe_edits(edits),
        "original_size": record.get("original_size") if edits else None,
    }


def describe_edits(edits: list[dict]) -> list[str]:
    """What was done, in words: ["cropped", "rotated", "mirrored"] (each once, in the order first done)."""
    words = {"crop": "cropped", "rotate": "rotated", "flip": "mirrored"}
    return list(dict.fromkeys(words[e["op"]] for e in edits if e.get("op") in words))


@bp.get("/api/datasets/<dataset_id>/images/<name>")
def image_file(dataset_id: str, name: str):
    dataset = context.dataset(dataset_id)
    path = dataset.require_image(name)
    return send_file(viewable(path, dataset.view_path(name)), conditional=True, max_age=3600)


def viewable(source: Path, view: Path) -> Path:
    """`source` when browsers show it as it is, upright; else (a HEIC photo, a WebP turned by its EXIF orientation)
    a full-size JPEG of it kept at `view`."""
    if imaging.shown_upright_by_browsers(source):
        return source
    try:
        return cached_picture(source, view, view_bytes)
    except UnreadableImage:  # a broken file shows as a missing picture, never a 500
        raise HttpNotFound("This image cannot be shown.") from None


@bp.get("/api/datasets/<dataset_id>/thumbs/<name>")
def thumbnail(dataset_id: str, name: str):
    dataset = context.dataset(dataset_id)
    source = dataset.require_image(name)
    try:
        thumb = cached_thumbnail(source, dataset.thumb_path(name))
    except UnreadableImage:  # a broken file shows as a missing thumbnail, never a 500
        raise HttpNotFound("This image cannot be shown.") from None
    response = send_file(thumb, conditional=True, max_age=86400)  # a WebP, or the image itself on a full disk
    return response


@bp.delete("/api/datasets/<dataset_id>/images/<name>")
def delete_image(dataset_id: str, name: str):
    dataset = context.dataset(dataset_id)
    dataset.require_image(name)
    return _deleted(dataset, [name])


@bp.post("/api/datasets/<dataset_id>/images/delete")
def delete_many(dataset_id: str):
    dataset = context.dataset(dataset_id)
    names = json_body().get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ApiError("'names' must be a list of image names.", 422)
    for name in names:
        dataset.image_path(name)  # every name is checked before anything is removed
    return _deleted(dataset, names)


@bp.post("/api/datasets/<dataset_id>/images/remove-flagged")
def remove_flagged(dataset_id: str):
    """One click: remove exact duplicates, near-duplicates, small or soft images."""
    dataset = context.dataset(dataset_id)
    kind = json_body().get("kind")
    keys = {"duplicates": ("duplicate_of",), "similar": ("similar_to",), "small": ("small",), "soft": ("soft",)}
    if not isinstance(kind, str) or kind not in keys:
        raise ApiError("'kind' must be 'duplicates', 'similar', 'small' or 'soft'.", 422)
    records = dataset.meta()["images"]
    names = [n for n, r in records.items() if any(k in (r.get("flags") or {}) for k in keys[kind])]
    return _deleted(dataset, names)


def _deleted(dataset, names: list[str]):
    """Deleted images go to the dataset's trash; `trash` is the batch that puts them back."""
    deleted, batch = trash.delete_images(dataset, names)
    return jsonify({"deleted": deleted, "trash": batch})
