"""Recently deleted, in the trainer: a deleted training job (its folder: LoRA, checkpoints, previews, log; its row
in the job store and its renders') and a file deleted from the LoRA library are moved into trainer/.trash, kept
TRASH_DAYS, then removed; restoring puts them back as they were. A wrong click costs nothing, and the space comes
back when the trash is emptied (the dashboard's storage panel counts it).

    GET    /api/trash                   entries, newest first: {id, kind, name, size, deleted_at, expires_at}
    POST   /api/trash/<entry>/restore   back as it was (409 when its id or file name was taken meanwhile)
    DELETE /api/trash/<entry>           removes one for good: {removed: 1, freed_bytes}
    DELETE /api/trash                   empties it: {removed: N, freed_bytes}
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Blueprint, jsonify

from studio.atomic import atomic_write_json, read_json
from studio.jobs import Job, JobStore
from studio.web import ApiError
from studio.workspace import Workspace, confined, safe_name
from trainer import library, library_facts, renders
from trainer.storage import folder_bytes

bp = Blueprint("trainer_trash", __name__)
TRASH_DIR = ".trash"  # under trainer/
MANIFEST = "deleted.json"
SOURCE = "source.json"  # a library file's record of where it came from (library_facts.source_file)
TRIES = "tries"  # in a library file's entry: the pictures of the renders tried of it
LOCK = ".trash.lock"  # beside the trash: held while an entry is made, restored or removed (the worker trashes jobs)
REMOVING = ".removing-"  # an entry being removed for good: no longer listed nor restorable
TRASH_DAYS = 7
DAY_S = 86400
_held_here = threading.Lock()  # flock keeps other processes out; this, the web app's other threads


def root(workspace: Workspace) -> Path:
    return workspace.trainer / TRASH_DIR


@contextmanager
def _held(workspace: Workspace) -> Iterator[None]:
    """One change of the trash at a time, in every process: emptying it while a restore moves an entry out removed
    what the restore was putting back (a job's files, a try's pictures)."""
    workspace.trainer.mkdir(parents=True, exist_ok=True)
    with _held_here, open(workspace.trainer / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _entry(workspace: Workspace) -> Path:
    folder = root(workspace) / f"{int(time.time() * 1000)}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    return folder


def trash_job(workspace: Workspace, store: JobStore, job: Job) -> str | None:
    """Moves a training job (not running) into the trash with its renders; its rows leave the job store. Returns the
    entry's id (None when another request deleted it first)."""
    with _held(workspace):
        return _trash_job(workspace, store, job.id)


def _trash_job(workspace: Workspace, store: JobStore, job_id: str) -> str | None:
    job = store.find(job_id)
    if job is None:
        return None
    tried = store.list(parent_id=job.id, kind="render", limit=10_000)
    entry = _entry(workspace)
    atomic_write_json(entry / MANIFEST, {"kind": "job", "name": job.name, "deleted_at": time.time(),
                                         "job": dataclasses.asdict(job),
                                         "renders": [dataclasses.asdict(render) for render in tried]})
    if not store.delete(job.id):  # claimed a moment ago: the caller stops it first
        shutil.rmtree(entry, ignore_errors=True)
        return None
    store.delete_children(job.id, "render")
    folder = workspace.job_dir(job.id)
    if folder.exists():
        os.replace(folder, entry / "job")
    return entry.name


def trash_lora(workspace: Workspace, name: str, store: JobStore | None = None,
               tries: list[Job] = (), job_id: str | None = None) -> tuple[str, list[Path]]:
    """Moves a library file into the trash (its copy in ComfyUI's loras is removed, as library.remove_from_library
    does) with `tries`, the renders tried of it (none running): their rows leave `store`, their pictures go along.
    `job_id`: the training job it is the LoRA of (restoring either brings the other back). Returns the entry's id
    and the paths that went."""
    path = library.library_lora(workspace.loras, name)
    entry = _kept_entry(workspace, path, {"kind": "lora", "name": path.name, "deleted_at": time.time(),
                                          "comfyui": workspace.comfyui_loras is not None, "job_id": job_id,
                                          "renders": [dataclasses.asdict(render) for render in tries]})
    for render in tries:
        if store.delete(render.id):
            _move(renders.folder(workspace, render), entry / TRIES / render.id)
            renders.remove_files(workspace, render)  # what is left: the small previews, made again on demand
    if library_facts.source_file(path).is_file():  # where it came from goes along
        os.replace(library_facts.source_file(path), entry / SOURCE)
    return entry.name, library.remove_from_library(workspace, path.name)


def keep_original(workspace: Workspace, path: Path, why: str) -> str:
    """The library file `path` kept in the trash as it is now, before something replaces it under its name (Convert:
    trainer.library_convert); restored like a deleted one once that name is free. Returns the entry's id."""
    return _kept_entry(workspace, path, {"kind": "lora", "name": path.name, "label": f"{path.name}, {why}",
                                         "deleted_at": time.time(), "renders": []}).name


def _kept_entry(workspace: Workspace, path: Path, manifest: dict) -> Path:
    """A new entry holding `path` (the same file by a second name, or a copy) and its manifest; when the file cannot
    be kept (a full disk without hard links) there is no entry, and the library file stays where it is."""
    entry = _entry(workspace)
    try:
        try:
            os.link(path, entry / path.name)  # the same file, kept by the trash's name once the library's goes
        except OSError:  # a disk without hard links
            shutil.copy2(path, entry / path.name)
        atomic_write_json(entry / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(entry, ignore_errors=True)
        raise
    return entry


def entries(workspace: Workspace, now: float | None = None) -> list[dict]:
    """What Recently deleted holds, newest first; an entry older than TRASH_DAYS is removed for good on the way."""
    now = time.time() if now is None else now
    found, expired = [], []
    for folder in _folders(workspace):
        manifest = read_json(folder / MANIFEST, {}) or {}
        deleted = _deleted_at(folder, manifest)
        if now - deleted > TRASH_DAYS * DAY_S:
            expired.append(folder)
            continue
        found.append({"id": folder.name, "kind": manifest.get("kind"),
                      "name": manifest.get("label") or manifest.get("name") or folder.name,
                      "size": folder_bytes(folder, skip=frozenset({MANIFEST})), "deleted_at": deleted,
                      "expires_at": deleted + TRASH_DAYS * DAY_S,
                      "restorable": manifest.get("kind") in ("job", "lora")})
    if expired:
        _expire(workspace, expired, now)
    return sorted(found, key=lambda e: -e["deleted_at"])


def _deleted_at(folder: Path, manifest: dict) -> float:
    try:
        return float(manifest.get("deleted_at") or folder.stat().st_mtime)
    except (OSError, TypeError, ValueError):  # gone meanwhile (restored, removed), or a manifest gone wrong
        return time.time()


def _expire(workspace: Workspace, folders: list[Path], now: float) -> None:
    """Entries past TRASH_DAYS go for good, as `remove` takes them: with the trash held, so never while a restore
    moves one out (it would lose what it was putting back), and only those still there and still expired."""
    with _held(workspace):
        going = _set_aside([folder for folder in folders if folder.is_dir() and now - _deleted_at(
            folder, read_json(folder / MANIFEST, {}) or {}) > TRASH_DAYS * DAY_S])
    for folder in going:
        shutil.rmtree(folder, ignore_errors=True)


def deleted_job(workspace: Workspace, job_id: str) -> dict | None:
    """The entry of Recently deleted that holds the job `job_id`; None when none does."""
    for entry in entries(workspace):
        manifest = read_json(root(workspace) / entry["id"] / MANIFEST, {}) or {}
        if entry["kind"] == "job" and (manifest.get("job") or {}).get("id") == job_id:
            return entry
    return None


def versions_held(workspace: Workspace) -> dict[str, list[dict]]:
    """The export versions that jobs in Recently deleted would read once restored (a job that waited in the queue,
    or could resume), as the job store's versions_in_use counts live ones: {version: [{id, name, status}]}."""
    held: dict[str, list[dict]] = {}
    for folder in _folders(workspace):
        manifest = read_json(folder / MANIFEST, {}) or {}
        row = manifest.get("job") if manifest.get("kind") == "job" else None
        if not isinstance(row, dict) or not (row.get("status") == "queued" or (
                row.get("status") in ("stopped", "failed", "interrupted") and row.get("resumable"))):
            continue
        sources = row.get("datasets") or [{"version": row.get("dataset_version")}]
        for version in dict.fromkeys(s.get("version") for s in sources if isinstance(s, dict) and s.get("version")):
            held.setdefault(version, []).append({"id": row.get("id"), "name": row.get("name") or row.get("id"),
                                                 "status": "in Recently deleted"})
    return held


def _folders(workspace: Workspace) -> list[Path]:
    trash = root(workspace)
    return [p for p in trash.iterdir() if p.is_dir() and not p.name.startswith(".")] if trash.is_dir() else []


def restore(workspace: Workspace, store: JobStore, entry_id: str) -> dict:
    """Puts an entry back; ApiError 409 when its place was taken meanwhile (nothing moves then). A job's LoRA and
    the job, deleted together from its card, come back together (`also`: the other one's, when it could)."""
    with _held(workspace):  # a double click restores once; the second finds the entry gone
        partner = _partner(workspace, entry_id)
        restored = _restore(workspace, store, entry_id)
        if partner is not None:
            try:
                restored["also"] = _restore(workspace, store, partner)
            except ApiError as exc:  # its place is taken: it stays in Recently deleted, and the answer says why
                restored["also_refused"] = exc.message
        return restored


def _partner(workspace: Workspace, entry_id: str) -> str | None:
    """The entry deleted together with `entry_id`: a job's LoRA file and the job."""
    manifests = {folder.name: read_json(folder / MANIFEST, {}) or {} for folder in _folders(workspace)}
    mine = manifests.get(entry_id) or {}
    if mine.get("kind") == "lora" and mine.get("job_id"):
        return next((name for name, other in manifests.items()
                     if other.get("kind") == "job" and (other.get("job") or {}).get("id") == mine["job_id"]), None)
    if mine.get("kind") == "job":
        job_id = (mine.get("job") or {}).get("id")
        return next((name for name, other in manifests.items()
                     if job_id and other.get("kind") == "lora" and other.get("job_id") == job_id), None)
    return None


def _restore(workspace: Workspace, store: JobStore, entry_id: str) -> dict:
    entry = confined(root(workspace), safe_name(entry_id))
    manifest = read_json(entry / MANIFEST, None) if not entry.name.startswith(".") else None  # not one being removed
    if not isinstance(manifest, dict):
        raise ApiError(f"Recently deleted has no entry {entry_id!r}.", 404)
    if manifest.get("kind") == "job":
        row = manifest["job"]
        moved = (entry / "job").exists()  # else its folder never left (the pod stopped while it was deleted)
        if store.find(row["id"]) is not None or (moved and workspace.job_dir(row["id"]).exists()):
            raise ApiError(f"A job with the id {row['id']} is here already; it cannot come back beside it.", 409)
        if moved:
            os.replace(entry / "job", workspace.job_dir(row["id"]))
        store.restore(_without_taken_library_file(store, row))
        for render in manifest.get("renders") or []:
            store.restore(render)
        restored = {"kind": "job", "id": row["id"], "name": manifest.get("name")}
    elif manifest.get("kind") == "lora":
        name = safe_name(manifest["name"])
        target = confined(workspace.loras, name)
        if target.exists():
            raise ApiError(f"The library has a file named {name} again; delete or rename it first.", 409)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(entry / name, target)
        if (entry / SOURCE).is_file():
            library_facts.source_file(target).parent.mkdir(exist_ok=True)
            os.replace(entry / SOURCE, library_facts.source_file(target))
        library.also_in_comfyui(workspace, target)
        for render in manifest.get("renders") or []:  # the renders tried of it, and their pictures
            store.restore(render)
            _move(entry / TRIES / render["id"], workspace.trainer / renders.TRIES_DIR / render["id"])
        restored = {"kind": "lora", "file": name, "name": name}
    else:
        raise ApiError("This entry cannot be restored.", 409)
    shutil.rmtree(entry, ignore_errors=True)
    return restored


def _without_taken_library_file(store: JobStore, row: dict) -> dict:
    """A job's row as it comes back, without the library file it recorded when another job's LoRA has that name now
    (the job and its LoRA were deleted, and a later job's LoRA took the free name): else its page showed that LoRA
    as its own, and Train more steps replaced it, in the library and ComfyUI, with this job's."""
    result = row.get("result")
    name = result.get("library_file") if isinstance(result, dict) else None
    if name and any(holder != row["id"] for holder in store.holders("train", "library_file", name)):
        return {**row, "result": {key: value for key, value in result.items() if key != "library_file"}}
    return row


def _move(source: Path, target: Path) -> None:
    """A render's pictures folder to its place (nothing when it has none)."""
    if source.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


def remove(workspace: Workspace, entry_id: str | None = None) -> tuple[int, int]:
    """Removes one entry, or all of them; returns how many went and the bytes that freed. Each leaves the list at
    once (renamed, with the trash held: never while a restore moves it out), then its files are removed, which
    takes a while for big ones."""
    with _held(workspace):
        folders = [confined(root(workspace), safe_name(entry_id))] if entry_id else _folders(workspace)
        if entry_id and (folders[0].name.startswith(".") or not folders[0].is_dir()):
            raise ApiError(f"Recently deleted has no entry {entry_id!r}.", 404)
        going = _set_aside(folders)
        if not entry_id:  # and what an earlier removal cut short (a restart) left
            going += [p for p in root(workspace).glob(REMOVING + "*") if p not in going]
    freed = _freed_bytes(going)
    for folder in going:
        shutil.rmtree(folder, ignore_errors=True)
    return len(folders), freed


def _freed_bytes(folders: list[Path]) -> int:
    """The bytes the disk gets back when `folders` go: a file counts once, and only when every name it has is among
    them (the library's copy and ComfyUI's are one file; a file a live job still links to stays on the disk)."""
    files: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [names seen, names it has, size]
    for folder in folders:
        for parent, _, names in os.walk(folder):
            for name in names:
                try:
                    stat = os.lstat(os.path.join(parent, name))
                except OSError:
                    continue
                files.setdefault((stat.st_dev, stat.st_ino), [0, stat.st_nlink, stat.st_size])[0] += 1
    return sum(size for seen, links, size in files.values() if seen >= links)


def _set_aside(folders: list[Path]) -> list[Path]:
    """Entries renamed out of the list (the trash held by the caller), to be removed after; returns their new paths."""
    going = []
    for folder in folders:
        target = folder.with_name(REMOVING + folder.name)
        os.replace(folder, target)
        going.append(target)
    return going


def _context() -> tuple[Workspace, JobStore]:
    from trainer.jobs_api import store, workspace

    return workspace(), store()


@bp.get("/api/trash")
def list_trash():
    space, _store = _context()
    return jsonify({"entries": entries(space), "days": TRASH_DAYS})


@bp.post("/api/trash/<entry_id>/restore")
def restore_entry(entry_id):
    space, store = _context()
    return jsonify({"restored": restore(space, store, entry_id)})


@bp.delete("/api/trash/<entry_id>")
def remove_entry(entry_id):
    space, _store = _context()
    removed, freed = remove(space, entry_id)
    return jsonify({"removed": removed, "freed_bytes": freed})


@bp.delete("/api/trash")
def empty():
    space, _store = _context()
    removed, freed = remove(space)
    return jsonify({"removed": removed, "freed_bytes": freed})
