"""Recently deleted: deleting images moves each image and its caption into the dataset's .trash folder,
one batch per delete, so a wrong click (or a one-click "remove small images") can be undone; deleting a
dataset moves its whole folder into datasets/.trash. Both are kept for TRASH_DAYS, then removed;
emptying removes them at once.

    GET    /api/datasets/<id>/trash                   the batches, newest first
    GET    /api/datasets/<id>/trash/<batch>/thumbs/<image>   a deleted image's thumbnail
    POST   /api/datasets/<id>/trash/<batch>/restore   puts a batch's images back (renamed if a name is taken)
    DELETE /api/datasets/<id>/trash                   empties it; {"batches": [...]}: only those (the page's)
    GET    /api/deleted-datasets                      deleted datasets, newest first
    POST   /api/deleted-datasets/<entry>/restore      brings one back (under a new id if its id was taken)
    DELETE /api/deleted-datasets                      removes them for good; {"datasets": [...]}: only those

Emptying answers how many it removed and the bytes the disk got back; one that names ids (so a delete made since in
another tab stays) also gets "left", how many could not go (a plain one: "left" when not 0). A symlink moves as
itself, never its target.
"""

from __future__ import annotations

import copy
import errno
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from flask import Blueprint, jsonify, send_file

from app import context, imaging
from app.importer import image_record
from app.store import ORIGINALS_DIR, TRASH_DIR, Dataset, DatasetStore, NotFound, dataset_lock, free_name, refresh_flags
from studio.atomic import atomic_write_json, read_json
from studio.thumbnails import UnreadableImage, cached_thumbnail
from studio.web import ApiError, json_body
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


def _entry(folder: Path, name: str) -> Path | None:
    """`folder/name` as a directory entry, or None when there is none: a symlink is the link itself (moving it moves
    the link, never the file it points to, which may be another image of the dataset or a file outside it)."""
    path = folder / safe_name(name)
    return path if os.path.lexists(path) else None


@contextmanager
def _writing(dataset: Dataset, done: str):
    """A folder that cannot be written (read-only, another user's) is said in a sentence: nothing was `done`."""
    try:
        yield
    except OSError as exc:
        if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
            raise
        raise ApiError(f"Nothing was {done}: {exc.filename or dataset.folder} cannot be written (a read-only folder, "
                       "or another user's). Fix its permissions, then try again.", 409) from exc


def delete_images(dataset: Dataset, names: list[str]) -> tuple[list[str], str | None]:
    """Moves the images among `names` that the dataset has (and their captions) into a new trash batch;
    returns (the names moved, the batch id)."""
    with dataset.lock(), _writing(dataset, "deleted"):
        meta = dataset.meta()
        for name in names:
            if not imaging.is_image_name(safe_name(name)):
                raise UnsafePathError(f"{name!r} is not an image name.")
        present = [n for n in dict.fromkeys(names) if n in meta["images"] or _entry(dataset.folder, n)]
        if not present:
            return [], None
        batch = f"{int(time.time())}-{secrets.token_hex(3)}"
        folder = _root(dataset) / batch
        folder.mkdir(parents=True)
        moves = {}  # entry in the dataset: where it goes in the batch (a.png and a.jpg put by hand share a.txt)
        for name in present:
            for entry in (_entry(dataset.folder, name), _entry(dataset.folder, os.path.splitext(name)[0] + ".txt")):
                if entry:
                    moves[entry] = folder / entry.name
            original = _entry(dataset.folder / ORIGINALS_DIR, name)  # an edited image's original goes with it
            if original:
                moves[original] = folder / ORIGINALS_DIR / name
        if any(target.parent != folder for target in moves.values()):
            (folder / ORIGINALS_DIR).mkdir()  # made now: a full disk fails it before anything is recorded as gone
        atomic_write_json(folder / MANIFEST, {"images": {n: meta["images"].get(n) for n in present}})
        before = copy.deepcopy(meta)
        for name in present:
            meta["images"].pop(name, None)
        refresh_flags(meta)
        # recorded as gone first: a crash before the moves leaves the files in place, and the next
        # import records them again (nothing is lost either way)
        dataset.save_meta(meta)

        def undo() -> None:  # every file is back in its place: recorded again, and the batch is no more
            dataset.save_meta(before)
            shutil.rmtree(folder, ignore_errors=True)

        _move_all(list(moves.items()), undo)
        for name in present:
            dataset.forget_previews(name)
        purge_expired(dataset)
    return present, batch


def _move_all(moves: list[tuple[Path, Path]], undo) -> None:
    """Makes every move or none: a move that fails puts the ones made back, then calls `undo`."""
    done = []
    try:
        for source, target in moves:
            os.replace(source, target)
            done.append((source, target))
    except BaseException:
        for source, target in reversed(done):
            os.replace(target, source)
        undo()
        raise


def restore(dataset: Dataset, batch: str) -> dict:
    """Puts a batch back; an image whose name was taken since comes back as name_2.ext (caption too)."""
    with dataset.lock(), _writing(dataset, "restored"):
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
                source = _entry(folder, name)
                if not source:
                    continue
                target = dataset.unique_name(name, taken)
                caption = _entry(folder, os.path.splitext(name)[0] + ".txt")
                move(source, dataset.folder / target)
                if caption:
                    move(caption, dataset.folder / (os.path.splitext(target)[0] + ".txt"))
                original = _entry(folder / ORIGINALS_DIR, name)
                if original:
                    (dataset.folder / ORIGINALS_DIR).mkdir(exist_ok=True)
                    move(original, dataset.folder / ORIGINALS_DIR / target)
                if record is None:  # an image the folder held but the dataset had not recorded
                    try:
                        info = imaging.inspect_image(dataset.image_path(target), context.settings().max_image_pixels)
                    except (imaging.ImageRejected, UnsafePathError):  # not a picture, or a link leading outside
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
        images = [name for name in manifest.get("images") or {} if _entry(folder, name)]
        if images:
            deleted_at = _deleted_at(folder)
            found.append({"id": folder.name, "deleted_at": deleted_at, "expires_at": deleted_at + TRASH_DAYS * 86400,
                          "images": images, "bytes": _disk_use(folder)[0]})
    return found


def _disk_use(folder: Path) -> tuple[int, int]:
    """(the bytes of the files under `folder`, captions and originals too; the bytes the disk gets back when they
    go: a file an export also links to stays on the disk). Symlinks count as themselves; the manifest does not."""
    size = freed = 0
    for parent, _, files in os.walk(folder):
        for name in (n for n in files if n != MANIFEST):
            try:
                stat = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            size += stat.st_size
            freed += stat.st_size if stat.st_nlink == 1 else 0
    return size, freed


def _remove(folders: list[Path]) -> tuple[set[str], int]:
    """Removes `folders` for good; returns (the names of those now gone, the bytes the disk got back)."""
    gone, freed = set(), 0
    for folder in folders:
        before = _disk_use(folder)[1]
        shutil.rmtree(folder, ignore_errors=True)  # what could not go (a read-only folder) is told, not raised
        freed += before - (_disk_use(folder)[1] if folder.exists() else 0)
        gone |= set() if folder.exists() else {folder.name}
    return gone, freed


def _chosen(key: str) -> set[str] | None:
    """The ids a request to empty names under `key` (the ones its page showed), or None: all of them."""
    chosen = json_body(optional=True).get(key)
    if chosen is None:
        return None
    if not isinstance(chosen, list) or not all(isinstance(i, str) for i in chosen):
        raise ApiError(f"'{key}' must be a list of ids.", 422)
    return set(chosen)


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
    chosen = _chosen("batches")
    with dataset.lock():
        listed = [b for b in batches(dataset) if chosen is None or b["id"] in chosen]
        gone, freed = _remove([_root(dataset) / b["id"] for b in listed])
        if chosen is None:
            shutil.rmtree(_root(dataset), ignore_errors=True)  # and what a crash left there
    return jsonify(_emptied([len(b["images"]) for b in listed if b["id"] in gone],
                            [len(b["images"]) for b in listed if b["id"] not in gone], freed, chosen is not None))


def _emptied(removed: list[int], left: list[int], freed: int, full: bool) -> dict:
    """What emptying did; "left" (what could not go) and the bytes freed as the module's docstring says."""
    answer = {"removed": sum(removed)}
    if full or left:
        answer["left"] = sum(left)
    answer["bytes"] = freed
    return answer


@bp.get("/api/deleted-datasets")
def list_deleted_datasets():
    return jsonify({"datasets": deleted_datasets(context.store()), "keep_days": TRASH_DAYS})


@bp.post("/api/deleted-datasets/<entry>/restore")
def restore_deleted_dataset(entry: str):
    return jsonify({"restored": restore_dataset(context.store(), entry)})


@bp.delete("/api/deleted-datasets")
def empty_deleted_datasets():
    store = context.store()
    chosen = _chosen("datasets")
    with dataset_lock(store.root):  # a restore at the same moment takes its dataset out whole first, or not at all
        listed = [d["id"] for d in deleted_datasets(store) if chosen is None or d["id"] in chosen]
        gone, freed = _remove([_deleted_root(store) / entry for entry in listed])
        if chosen is None:
            shutil.rmtree(_deleted_root(store), ignore_errors=True)
    return jsonify(_emptied([1 for e in listed if e in gone], [1 for e in listed if e not in gone], freed,
                            chosen is not None))
