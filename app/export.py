"""Export to the trainer as an immutable, content-addressed version (see studio.exports) that the
export name then points at; and the dataset's ZIP download."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from contextlib import closing
from pathlib import Path

from flask import Blueprint, jsonify

from app import context
from app.imaging import training_copy
from app.store import Dataset, NotFound, natural_key, slugify
from studio import ahead, exports
from studio.ahead import in_order
from studio.atomic import atomic_write_json, read_json
from studio.job_reporter import JobReporter
from studio.jobs import ACTIVE, JobError
from studio.text import name_list, plural
from studio.web import ApiError, json_body, json_flag
from studio.workspace import UnsafePathError, Workspace, safe_name
from studio.zip_stream import zip_response

bp = Blueprint("export", __name__)
EXPORT_THREADS = ahead.THREADS


def apply_trigger(caption: str, trigger: str) -> str:
    """Prepend the trigger word unless the caption already names it."""
    caption = caption.strip()
    if not trigger or re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, re.IGNORECASE):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def export_selection(meta: dict, include_duplicates: bool = False) -> tuple[list[str], list[str]]:
    """(images to export, images left out). Exact duplicates flagged in the gallery are left out unless
    asked for: a copy only makes the model see that picture twice as often. The first image of each
    group is never flagged, so every picture is still exported once."""
    records = meta["images"]
    names = sorted(records, key=natural_key)
    if include_duplicates:
        return names, []
    left_out = [n for n in names if "duplicate_of" in (records[n].get("flags") or {})]
    skipped = set(left_out)
    return [n for n in names if n not in skipped], left_out


def run_export(job: JobReporter, dataset: Dataset, name: str, workspace: Workspace,
               include_duplicates: bool = False) -> dict:
    """Build the export beside the versions (same disk, so storing it is a rename), name it by its
    content, then point `name` at it. An unchanged dataset exports to the version it already has."""
    with dataset.lock():  # the dataset of one moment: a bulk caption change (or auto-caption) meanwhile is not half in
        meta = dataset.meta()
        names, left_out = export_selection(meta, include_duplicates)
        captions = dataset.read_captions(names)
    trigger = meta.get("trigger_word", "")
    if not names:
        raise JobError("This dataset has no images to export.")
    exports.sweep_leftovers(workspace)  # what an export killed half way left
    build = exports.versions_root(workspace) / f".build-{name}-{secrets.token_hex(4)}"
    build.mkdir(parents=True)
    content = exports.ContentHash()
    uncaptioned = []
    try:
        job.update(total=len(names), done=0, message=f"Exporting {plural(len(names), 'image')}")
        with closing(_placed(job, dataset, names, build)) as placed_images:  # its threads end before the clean-up
            for index, (image, stem, placed, as_is) in enumerate(placed_images, start=1):
                known = _known_digest(meta["images"].get(image, {}), placed) if as_is else None
                if known:  # the same bytes the import hashed: files in a dataset are never changed in place
                    content.add_digest(placed.name, known)
                else:
                    content.add_file(placed.name, placed)
                text = captions.get(image) or ""
                if not text.strip():
                    uncaptioned.append(image)
                caption = apply_trigger(text, trigger) + "\n"
                (build / f"{stem}.txt").write_text(caption, "utf-8")
                content.add_text(f"{stem}.txt", caption)
                job.update(done=index, current=image)
        soft = [n for n in names if (meta["images"].get(n, {}).get("flags") or {}).get("soft")]
        about = {"name": name, "trigger_word": trigger, "source_dataset_id": dataset.id, "soft": soft}
        content.add_identity(about)
        version = content.version()
        atomic_write_json(build / "dataset.json", {**about, "images": len(names), "exported_at": time.time(),
                                                   "version": version})
        with dataset.lock():  # an image edited meanwhile would not match the version's name
            _unchanged(meta, dataset.meta(), names)
            with exports.changing(workspace):  # not while the same version is being deleted
                exports.store_version(workspace, build, version)
                exports.point(workspace, name, version)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    with dataset.lock():
        meta = dataset.meta()
        meta["last_export"] = {"name": name, "version": version, "at": time.time(), "images": len(names),
                               "left_out": len(left_out), "path": str(workspace.export_dir(name))}
        dataset.save_meta(meta)
    job.store.update(job.id, dataset_version=version)
    message = f"Exported {plural(len(names), 'image')} to trainer/datasets/{name} (version {version})"
    if uncaptioned:  # said once more after the checks: these train on the trigger word alone, or on nothing
        message += (f"; {len(uncaptioned)} without a caption ({name_list(uncaptioned)}): "
                    f"{'trained on the trigger word alone' if trigger else 'trained with no caption'}")
    if left_out:
        message += f"; left out {plural(len(left_out), 'exact duplicate')} ({name_list(left_out)})"
    job.update(message=message + ".")
    return {"name": name, "version": version, "images": len(names), "left_out": left_out,
            "uncaptioned": uncaptioned, "path": str(workspace.export_dir(name))}


def _placed(job: JobReporter, dataset: Dataset, names: list[str], build: Path):
    """(name, stem, file placed in `build`, whether it holds the image's own bytes) of each image, in order. The
    files are placed on several threads: a hard link costs nothing, but a HEIC photo is converted to a JPEG
    (about 0.7 s each for 12 megapixels), and the decoders and encoders use one core each."""
    def place(image: str) -> tuple:
        stem = os.path.splitext(image)[0]
        try:
            return (image, stem, *training_copy(dataset.image_path(image), build, stem))
        except FileNotFoundError:  # deleted (or its dataset) after the export began
            raise JobError(f"{image} was deleted while the export ran: export again.") from None

    return in_order(place, names, threads=EXPORT_THREADS, between=job.check_stop, name="export")


def _known_digest(record: dict, placed: Path) -> str | None:
    """The digest dataset.json recorded for an image exported as it is, when its file still has the recorded size: an
    edit killed between writing the picture and saving its record left the old digest, and a version named by it
    would be mistaken for the export of the old picture."""
    try:
        return record.get("sha256") if record.get("bytes") == placed.stat().st_size else None
    except OSError:
        return None


def _unchanged(before: dict, now: dict, names: list[str]) -> None:
    changed = [n for n in names if (now["images"].get(n) or {}).get("sha256") != before["images"][n].get("sha256")]
    if changed:
        how = "deleted" if all(n not in now["images"] for n in changed) else "edited, replaced or deleted"
        raise JobError(f"{plural(len(changed), 'image')} changed while the export ran ({name_list(changed)}, "
                       f"{how}): export again.")


def export_folder(dataset: Dataset, name) -> tuple[str, Path]:
    """(name, folder) of the export to push or publish: the one named in the request, else this dataset's latest
    export; ApiError when there is none."""
    workspace = context.workspace()
    if name is None:
        last = dataset.meta().get("last_export") or {}
        name = last.get("name")
        if not name:
            raise ApiError("This dataset has not been exported yet: export it, then push.", 409)
    if not isinstance(name, str):
        raise ApiError("'export' must be the name of an export.", 422)
    try:
        folder = workspace.export_dir(name)
    except UnsafePathError:
        raise ApiError(f"{name!r} is not a valid export name.", 422) from None
    meta = read_json(folder / "dataset.json", None)
    if not isinstance(meta, dict) or meta.get("source_dataset_id") != dataset.id:
        raise ApiError(f"There is no export {name!r} of this dataset.", 404)
    return safe_name(name), folder


def start_export(dataset: Dataset, name: str, parent_id: str | None = None, include_duplicates: bool = False):
    """Queue an export of `dataset` as `name` (409 while one runs); exact duplicates are left out
    unless `include_duplicates`."""
    if not dataset.image_names():
        raise ApiError("This dataset has no images to export.", 409)
    workspace = context.workspace()
    with dataset.lock():  # two tabs at once: the second sees the first's job (created before the lock is let go)
        current = context.jobs().latest("export", dataset.id)
        if current and current.status in ACTIVE:
            raise ApiError("An export of this dataset is already running.", 409)
        captioning = context.jobs().latest("caption", dataset.id)
        if captioning and captioning.status in ACTIVE:  # exported now, the images not captioned yet train without one
            raise ApiError(f"Auto-captioning of this dataset is still running ({captioning.done} of "
                           f"{plural(captioning.total, 'image')} done): export when it has finished, or stop it "
                           "first.", 409)
        return context.executor().submit("export", dataset.id,
                                         lambda j: run_export(j, dataset, name, workspace, include_duplicates),
                                         name=name, parent_id=parent_id)


@bp.post("/api/datasets/<dataset_id>/export")
def export_dataset(dataset_id: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    raw = body.get("name") or dataset.meta().get("name") or dataset.id
    if not isinstance(raw, str):
        raise ApiError("'name' must be text.", 422)
    include_duplicates = json_flag(body, "include_duplicates")
    name = slugify(raw)
    if not json_flag(body, "replace"):
        _check_not_anothers(dataset, name)
    return jsonify(start_export(dataset, name, include_duplicates=include_duplicates).public()), 202


def _check_not_anothers(dataset: Dataset, name: str) -> None:
    """An export name is its dataset's: exported over by another dataset, the jobs and the Train link of the first
    would train on the second's images without a word. Refused (409) unless asked for ("replace": true), with a
    free name."""
    from trainer.names import unique_name

    workspace = context.workspace()
    owner = (read_json(workspace.export_dir(name) / "dataset.json", None) or {}).get("source_dataset_id")
    if not owner or owner == dataset.id:
        return
    try:
        label = repr(context.store().get(owner).meta().get("name") or owner)
    except NotFound:
        label = "a deleted dataset"
    exports_root = workspace.exports
    free = unique_name(name, {path.name.lower() for path in exports_root.iterdir()} if exports_root.is_dir() else set())
    raise ApiError(f"trainer/datasets/{name} is the export of {label}: exporting this dataset there would make its "
                   f"jobs train on these images. Export as {free} instead (or replace it on purpose).", 409,
                   details=[{"field": "name", "free": free, "owner": owner}])


@bp.get("/api/datasets/<dataset_id>/export")
def export_progress(dataset_id: str):
    dataset = context.dataset(dataset_id)
    return jsonify({"job": context.latest_job(dataset, "export"), "last_export": dataset.meta().get("last_export")})


@bp.get("/api/datasets/<dataset_id>/download")
def download(dataset_id: str):
    dataset = context.dataset(dataset_id)
    meta = dataset.meta()
    names = dataset.image_names()

    def entries():
        for image in names:
            yield image, dataset.image_path(image)
            caption = dataset.read_caption(image)
            if caption is not None:
                yield os.path.splitext(image)[0] + ".txt", caption.encode()
        yield "dataset.json", _public_meta(meta).encode()

    # named as the dataset is ("日本の猫.zip"), the slug ("dataset.zip") only where a client cannot take UTF-8 names
    label = meta.get("name") or dataset.id
    return zip_response(f"{label}.zip", entries(), plain=f"{slugify(label)}.zip")


def _public_meta(meta: dict) -> str:
    return json.dumps({"name": meta.get("name"), "trigger_word": meta.get("trigger_word", ""),
                       "images": len(meta.get("images", {}))}, indent=2)
