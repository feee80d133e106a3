"""Recently deleted: deleting images moves each image and its caption into the dataset's .trash folder,
one batch per delete, so a wrong click (or a one-click "remove small images") can be undone; deleting a
dataset moves its whole folder into datasets/.trash. Both are kept for TRASH_DAYS, then removed;
emptying removes them at once.

    GET    /api/datasets/<id>/trash                   the batches, newest first
    GET    /api/datasets/<id>/trash/<batch>/thumbs/<image>   a deleted image's thumbnail
    POST   /api/datasets/<id>/trash/<batch>/restore   puts a batch's images back (renamed if a name is taken)
    DELETE /api/datasets/<id>/trash                   empties it
    GET    /api/deleted-datasets                      deleted datasets, newest first
    POST   /api/deleted-datasets/<entry>/restore      brings one back (under a new id if its id was taken)
    DELETE /api/deleted-datasets                      removes them for good
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from flask import Blueprint, jsonify, send_file

from app import context, imaging
from app.importer import image_record
from app.store import ORIGINALS_DIR, TRASH_DIR, Dataset, DatasetStore, NotFound, dataset_lock, free_name, refresh_flags
from studio.atomic import atomic_write_json, read_json
from studio.thumbnails import UnreadableImage, cached_thumbnail
from studio.workspace import UnsafePathError, confined, safe_name

bp = Blueprint("trash", __name__)

MANIFEST = "deleted.json"
TRASH_DAYS = 7


def _root(dataset: Dataset) -> Path:
    return dataset.folder / TRASH_DIR


def _batch_folder(dataset: Dataset, batch: str) -> Path:
    try:
        folder = confined(_root(dataset), batch)
    except UnsafePathError:
        raise NotFound(f"There is no deleted batch {batch!r}.") from None
    if not (folder / MANIFEST).is_file():
        raise NotFound(f"There is no deleted batch {batch!r}: restored, emptied, or older than {TRASH_DAYS} days.")
    return folder


def delete_images(dataset: Dataset, names: list[str]) -> tuple[list[str], str | None]:
    """Moves the images among `names` that the dataset has (and their captions) into a new trash batch;
    returns (the names moved, the batch id)."""
    with dataset.lock():
        meta = dataset.meta()
        present = [n for n in dict.fromkeys(names) if n in meta["images"] or dataset.image_path(n).exists()]
        if not present:
            return [], None
        batch = f"{int(time.time())}-{secrets.token_hex(3)}"
        folder = _root(dataset) / batch
        folder.mkdir(parents=True)
        atomic_write_json(folder / MANIFEST, {"images": {n: meta["images"].get(n) for n in present}})
        for name in present:
            meta["images"].pop(name, None)
        refresh_flags(meta)
        # recorded as gone first: a crash before the moves leaves the files in place, and the next
        # import records them again (nothing is lost either way)
        dataset.save_meta(meta)
        for name in present:
            for path in (dataset.image_path(name), dataset.caption_path(name)):
                if path.exists():
                    os.replace(path, folder / path.name)
            dataset.forget_previews(name)
            if dataset.original_path(name).is_file():  # an edited image's original goes with it
                (folder / ORIGINALS_DIR).mkdir(exist_ok=True)
                os.replace(dataset.original_path(name), folder / ORIGINALS_DIR / name)
        purge_expired(dataset)
    return present, batch


def restore(dataset: Dataset, batch: str) -> dict:
    """Puts a batch back; an image whose name was taken since comes back as name_2.ext (caption too)."""
    with dataset.lock():
        folder = _batch_folder(dataset, batch)
        records = (read_json(folder / MANIFEST, {}) or {}).get("images") or {}
        meta = dataset.meta()
        taken = dataset.taken_stems()
        restored, renamed, moved = [], {}, []

        def move(source: Path, target: Path) -> None:
            os.replace(source, target)
            moved.append((source, target))

        try:
            for name, record in records.items():
                source = confined(folder, name)
                if not source.is_file():
                    continue
                target = dataset.unique_name(name, taken)
                caption = source.with_suffix(".txt")
                move(source, dataset.image_path(target))
                if caption.is_file():
                    move(caption, dataset.caption_path(target))
                if (folder / ORIGINALS_DIR / name).is_file():
                    dataset.original_path(target).parent.mkdir(exist_ok=True)
                    move(folder / ORIGINALS_DIR / name, dataset.original_path(target))
                if record is None:  # an image the folder held but the dataset had not recorded
                    try:
                        info = imaging.inspect_image(dataset.image_path(target), context.settings().max_image_pixels)
                    except imaging.ImageRejected:
                        continue  # back in the folder as it was before the delete: unrecorded
                    record = image_record(info, time.time())
                meta["images"][target] = record
                restored.append(target)
                if target != name:
                    renamed[name] = target
            refresh_flags(meta)
            dataset.save_meta(meta)
        except BaseException:  # a full disk: the files go back into the batch, which stays listed to try again
            for source, target in reversed(moved):
                os.replace(target, source)
            raise
        shutil.rmtree(folder, ignore_errors=True)
    return {"restored": restored, "renamed": renamed}


def batches(dataset: Dataset) -> list[dict]:
    """What the trash holds, newest first (expired batches are removed on the way)."""
    purge_expired(dataset)
    found = []
    for folder in sorted(_subfolders(dataset), key=lambda f: f.name, reverse=True):
        manifest = read_json(folder / MANIFEST, None)
        if not isinstance(manifest, dict):
            continue
        files = [folder / name for name in manifest.get("images") or {} if (folder / name).is_file()]
        if files:
            deleted_at = _deleted_at(folder)
            found.append({"id": folder.name, "deleted_at": deleted_at, "expires_at": deleted_at + TRASH_DAYS * 86400,
                          "images": [f.name for f in files], "bytes": sum(f.stat().st_size for f in files)})
    return found


def _subfolders(dataset: Dataset) -> list[Path]:
    root = _root(dataset)
    return [f for f in root.iterdir() if f.is_dir()] if root.is_dir() else []


def purge_expired(dataset: Dataset, now: float | None = None) -> None:
    """Removes batches deleted more than TRASH_DAYS ago (and any a crash left without a manifest)."""
    with dataset.lock():  # a delete in progress holds it between making its batch and writing the manifest
        _purge(_subfolders(dataset), now)
        for folder in _subfolders(dataset):
            if not (folder / MANIFEST).exists() and not any(folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)


def _deleted_at(folder: Path) -> float:
    """When a batch or a dataset was deleted: its folder's name starts with that time."""
    stamp = folder.name.split("-", 1)[0]
    return float(stamp) if stamp.isdigit() else folder.stat().st_mtime


def _purge(folders: list[Path], now: float | None) -> None:
    limit = (now or time.time()) - TRASH_DAYS * 86400
    for folder in folders:
        if _deleted_at(folder) < limit:
            shutil.rmtree(folder, ignore_errors=True)


# -- whole datasets --------------------------------------------------------------------------------
def _deleted_root(store: DatasetStore) -> Path:
    return store.root / TRASH_DIR


def delete_dataset(store: DatasetStore, dataset: Dataset) -> str:
    """Moves the dataset's folder into datasets/.trash; every reader sees it gone at once. Returns the
    entry that restores it."""
    stamp = int(time.time())
    with dataset.lock():
        _deleted_root(store).mkdir(exist_ok=True)
        while (_deleted_root(store) / f"{stamp}-{dataset.id}").exists():  # one of its id deleted this second
            stamp += 1
        entry = f"{stamp}-{dataset.id}"
        os.replace(dataset.folder, _deleted_root(store) / entry)
    purge_expired_datasets(store)
    return entry


def deleted_datasets(store: DatasetStore) -> list[dict]:
    purge_expired_datasets(store)
    found = []
    for folder in sorted(_entries(store), key=lambda f: f.name, reverse=True):
        meta = read_json(folder / "dataset.json", None)
        dataset_id = folder.name.partition("-")[2]
        if not isinstance(meta, dict) or not dataset_id:
            continue  # not one of ours: "<time>-<id>" with the dataset inside
        images = meta.get("images") or {}
        deleted_at = _deleted_at(folder)
        found.append({"id": folder.name, "dataset_id": dataset_id, "name": meta.get("name"),
                      "images": len(images), "bytes": sum(r.get("bytes") or 0 for r in images.values()),
                      "deleted_at": deleted_at, "expires_at": deleted_at + TRASH_DAYS * 86400})
    return found


def restore_dataset(store: DatasetStore, entry: str) -> str:
    """Brings a deleted dataset back; returns its id (a new one when a dataset took the old id since)."""
    try:
        folder = confined(_deleted_root(store), entry)
    except UnsafePathError:
        raise NotFound(f"There is no deleted dataset {entry!r}.") from None
    wanted = entry.partition("-")[2]
    with dataset_lock(store.root):  # the same lock that picks ids and names for new datasets
        if not (folder / "dataset.json").is_file() or not wanted:  # checked under it: a double click restores once
            raise NotFound(f"There is no deleted dataset {entry!r}: restored, emptied, or older than {TRASH_DAYS} "
                           "days.")
        taken = store.names()
        dataset_id = wanted
        while (store.root / dataset_id).exists():
            dataset_id = f"{wanted}-{secrets.token_hex(2)}"
        os.replace(folder, store.root / dataset_id)
        dataset = Dataset(dataset_id, store.root / dataset_id)
        with dataset.lock():
            meta = dataset.meta()
            name = str(meta.get("name") or dataset_id)
            if dataset_id != wanted or name.casefold() in taken:  # a dataset took its id or its name since
                meta["id"] = dataset_id
                meta["name"] = free_name(name, taken) if name.casefold() in taken else name
                dataset.save_meta(meta)
    return dataset_id


def _entries(store: DatasetStore) -> list[Path]:
    root = _deleted_root(store)
    return [f for f in root.iterdir() if f.is_dir()] if root.is_dir() else []


def purge_expired_datasets(store: DatasetStore, now: float | None = None) -> None:
    _purge(_entries(store), now)


@bp.get("/api/datasets/<dataset_id>/trash")
def list_trash(dataset_id: str):
    found = batches(context.dataset(dataset_id))
    return jsonify({"batches": found, "keep_days": TRASH_DAYS})


@bp.get("/api/datasets/<dataset_id>/trash/<batch>/thumbs/<name>")
def trash_thumb(dataset_id: str, batch: str, name: str):
    """A deleted image's thumbnail, so the list shows what a batch holds (kept in the batch, gone with it)."""
    folder = _batch_folder(context.dataset(dataset_id), batch)
    source = confined(folder, safe_name(name))
    if not imaging.is_image_name(source.name) or not source.is_file():
        raise NotFound(f"The batch has no image {name!r}.")
    try:
        thumb = cached_thumbnail(source, folder / ".thumbs" / f"{source.name}.webp")
    except UnreadableImage:
        raise NotFound("This image cannot be shown.") from None
    return send_file(thumb, conditional=True, max_age=3600)


@bp.post("/api/datasets/<dataset_id>/trash/<batch>/restore")
def restore_batch(dataset_id: str, batch: str):
    return jsonify(restore(context.dataset(dataset_id), batch))


@bp.delete("/api/datasets/<dataset_id>/trash")
def empty_trash(dataset_id: str):
    dataset = context.dataset(dataset_id)
    with dataset.lock():
        removed = sum(len(b["images"]) for b in batches(dataset))
        shutil.rmtree(_root(dataset), ignore_errors=True)
    return jsonify({"removed": removed})


@bp.get("/api/deleted-datasets")
def list_deleted_datasets():
    return jsonify({"datasets": deleted_datasets(context.store()), "keep_days": TRASH_DAYS})


@bp.post("/api/deleted-datasets/<entry>/restore")
def restore_deleted_dataset(entry: str):
    return jsonify({"restored": restore_dataset(context.store(), entry)})


@bp.delete("/api/deleted-datasets")
def empty_deleted_datasets():
    store = context.store()
    with dataset_lock(store.root):  # a restore at the same moment takes its dataset out whole first, or not at all
        removed = len(deleted_datasets(store))
        shutil.rmtree(_deleted_root(store), ignore_errors=True)
    return jsonify({"removed": removed})
