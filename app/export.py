"""Export to the trainer (`trainer/datasets/<name>/`, swapped in atomically) and ZIP download."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import secrets
import shutil
import time
import zipfile
from pathlib import Path

from flask import Blueprint, Response, jsonify, stream_with_context
from PIL import Image

from app import context
from app.jobs import ACTIVE, Job, JobError, latest_job
from app.store import Dataset, slugify
from studio.atomic import atomic_write_json
from studio.web import ApiError, json_body

bp = Blueprint("export", __name__)
TRAINER_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp"}
_RENAME_EXCHANGE = 2


def apply_trigger(caption: str, trigger: str) -> str:
    """Prepend the trigger word unless the caption already names it."""
    caption = caption.strip()
    if not trigger or re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, re.IGNORECASE):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd = -100
    result = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def swap_into_place(built: Path, target: Path) -> None:
    """Replace `target` with `built` so readers see the old or the new export, never half of one."""
    if not target.exists():
        os.replace(built, target)
        return
    if _exchange(built, target):
        shutil.rmtree(built, ignore_errors=True)  # `built` now holds the old export
        return
    old = target.with_name(f".old-{target.name}-{secrets.token_hex(4)}")
    os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)


def _place_image(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same disk: no copy, and the dataset file is never modified in place
    except OSError:
        shutil.copy2(source, target)


def run_export(job: Job, dataset: Dataset, name: str, target: Path) -> dict:
    """Build the export beside `target` (same disk, so the final swap is a rename)."""
    exports = target.parent
    meta = dataset.meta()
    trigger = meta.get("trigger_word", "")
    names = dataset.image_names()
    if not names:
        raise JobError("This dataset has no images to export.")
    build = exports / f".build-{name}-{secrets.token_hex(4)}"
    build.mkdir(parents=True)
    try:
        job.update(total=len(names), done=0, message=f"Exporting {len(names)} images")
        for index, image in enumerate(names, start=1):
            job.check_cancel()
            source = dataset.image_path(image)
            stem, ext = os.path.splitext(image)
            if ext.lower() in TRAINER_EXTENSIONS:
                _place_image(source, build / image)
            else:  # HEIC/AVIF: the trainer reads only jpg/png/webp
                with Image.open(source) as img:
                    img.convert("RGB").save(build / f"{stem}.png")
            caption = apply_trigger(dataset.read_caption(image) or "", trigger)
            (build / f"{stem}.txt").write_text(caption + "\n", "utf-8")
            job.update(done=index, current=image)
        atomic_write_json(build / "dataset.json", {"name": name, "trigger_word": trigger, "images": len(names),
                                                   "exported_at": time.time(), "source_dataset_id": dataset.id})
        swap_into_place(build, target)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    with dataset.lock():
        meta = dataset.meta()
        meta["last_export"] = {"name": name, "at": time.time(), "images": len(names), "path": str(target)}
        dataset.save_meta(meta)
    job.update(message=f"Exported {len(names)} images to trainer/datasets/{name}.")
    return {"name": name, "images": len(names), "path": str(target)}


@bp.post("/api/datasets/<dataset_id>/export")
def start_export(dataset_id: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    raw = body.get("name") or dataset.meta().get("name") or dataset.id
    if not isinstance(raw, str):
        raise ApiError("'name' must be text.", 422)
    name = slugify(raw)
    if not dataset.image_names():
        raise ApiError("This dataset has no images to export.", 409)
    current = latest_job(dataset.jobs, "export")
    if current and current["state"] in ACTIVE:
        raise ApiError("An export of this dataset is already running.", 409)
    exports = context.workspace().exports
    exports.mkdir(parents=True, exist_ok=True)
    target = context.workspace().export_dir(name)
    job = context.runner().start(dataset.jobs, "export", lambda j: run_export(j, dataset, name, target))
    return jsonify(job.state), 202


@bp.get("/api/datasets/<dataset_id>/export")
def export_progress(dataset_id: str):
    dataset = context.dataset(dataset_id)
    return jsonify({"job": latest_job(dataset.jobs, "export"), "last_export": dataset.meta().get("last_export")})


class _Sink:
    """A write-only file for zipfile that hands written bytes to the response as they come."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


@bp.get("/api/datasets/<dataset_id>/download")
def download(dataset_id: str):
    dataset = context.dataset(dataset_id)
    meta = dataset.meta()
    names = dataset.image_names()

    def generate():
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for image in names:
                path = dataset.image_path(image)
                if not path.is_file():
                    continue
                with open(path, "rb") as source, archive.open(image, "w", force_zip64=True) as entry:
                    for block in iter(lambda s=source: s.read(1 << 20), b""):
                        entry.write(block)
                        yield sink.take()
                caption = dataset.read_caption(image)
                if caption is not None:
                    archive.writestr(os.path.splitext(image)[0] + ".txt", caption)
                yield sink.take()
            archive.writestr("dataset.json", _public_meta(meta))
        yield sink.take()

    filename = slugify(meta.get("name") or dataset.id) + ".zip"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "X-Accel-Buffering": "no",
               "Cache-Control": "no-cache, no-transform"}
    return Response(stream_with_context(generate()), mimetype="application/zip", headers=headers)


def _public_meta(meta: dict) -> str:
    return json.dumps({"name": meta.get("name"), "trigger_word": meta.get("trigger_word", ""),
                       "images": len(meta.get("images", {}))}, indent=2)
