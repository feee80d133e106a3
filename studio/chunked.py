"""Chunked, resumable upload sessions of large files, for the dataset manager's uploads and the trainer's LoRA library.

RunPod's proxy cuts requests over ~100 MB or ~100 s, so a page (studio/static/chunked_upload.js) sends a big file in
chunks, each a quick request, asks which chunks arrived after a dropped connection, then completes the session. A
session is a folder `session-<id>` under the workspace's uploads: its session.json (the file's name and size, the
chunk size, its owner: a dataset, or the library) and chunks/<n>, each written whole or not at all. Sessions may be
resumed for two days after their last chunk; other folders left there by a crash are swept after six hours.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from pathlib import Path

from studio.atomic import atomic_write_json, read_json
from studio.disk import FREE_SPACE, free_bytes
from studio.model_status import format_bytes
from studio.web import ApiError
from studio.workspace import confined, safe_name

SESSION_ID = re.compile(r"^[0-9a-f]{16}$")
CHUNK_NUMBER = re.compile(r"[0-9]+")
SESSION_MAX_AGE_S = 48 * 3600
ORPHAN_MAX_AGE_S = 6 * 3600


def session_dir(root: Path, sid: str) -> Path:
    if not SESSION_ID.match(sid or ""):
        raise ApiError("Unknown upload session.", 404)
    return confined(root, f"session-{safe_name(sid)}")


def load(root: Path, sid: str, owner: dict) -> tuple[dict, Path]:
    """(session.json, folder) of a session of `owner` ({"dataset": id} or {"library": ...}); 404 otherwise."""
    folder = session_dir(root, sid)
    info = read_json(folder / "session.json", None)
    if not isinstance(info, dict) or any(info.get(key) != value for key, value in owner.items()):
        raise ApiError("Unknown or expired upload session: start the upload again.", 404)
    return info, folder


def checked_size(size, filename: str, limit_mb: int) -> int:
    """The file size a session is asked for: 422 unless a whole number above 0, 413 over `limit_mb`."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ApiError("'size' must be the file size in bytes.", 422)
    if size == 0:
        raise ApiError(f"{filename} is empty (0 bytes).", 422)
    if size > limit_mb * 2**20:
        raise ApiError(f"{filename} ({size / 2**20:,.1f} MB) is over the limit of {limit_mb:,} MB (MAX_UPLOAD_MB).",
                       413)
    return size


def create(root: Path, owner: dict, filename: str, size: int, chunk_size: int) -> dict:
    """A new session (old ones swept first); what `describe` says of it. 507 at once when the disk has not room for
    the chunks and the file put together from them (twice `size`), instead of failing a chunk in."""
    root.mkdir(parents=True, exist_ok=True)
    sweep(root)
    free = free_bytes(root)
    if free is not None and free < 2 * size:
        raise ApiError(f"{filename} ({format_bytes(size)}) needs {format_bytes(2 * size)} free on the pod's disk "
                       f"while it goes up and is put together, and {root} has {format_bytes(free)}: {FREE_SPACE}", 507)
    sid = secrets.token_hex(8)
    folder = session_dir(root, sid)
    (folder / "chunks").mkdir(parents=True)
    info = {"id": sid, **owner, "filename": filename, "size": size, "chunk_size": chunk_size,
            "chunks": -(-size // chunk_size), "created_at": time.time()}
    atomic_write_json(folder / "session.json", info)
    return describe(info, folder)


def _expected_size(info: dict, n: int) -> int:
    return min(info["chunk_size"], info["size"] - n * info["chunk_size"])


def received(info: dict, folder: Path) -> list[int]:
    chunks = folder / "chunks"
    found = []
    for n in range(info["chunks"]):
        path = chunks / str(n)
        if path.is_file() and path.stat().st_size == _expected_size(info, n):
            found.append(n)
    return found


def describe(info: dict, folder: Path) -> dict:
    got = received(info, folder)
    missing = sorted(set(range(info["chunks"])) - set(got))
    return {**info, "received": got, "missing": missing, "complete": not missing}


def check_complete(info: dict, folder: Path) -> None:
    """409 naming the missing chunks unless every chunk arrived."""
    missing = describe(info, folder)["missing"]
    if missing:
        raise ApiError(f"{info['filename']} is missing {len(missing)} chunk(s): send them before completing.", 409,
                       details=missing[:50])


def receive_chunk(info: dict, folder: Path, n: str, stream, length: int | None) -> dict:
    """Chunk `n` from `stream` (the request body), written whole under its number or not at all."""
    # ASCII digits only: str.isdigit() is true of "²" too, which int() refuses (a 500)
    if not CHUNK_NUMBER.fullmatch(n) or int(n) >= info["chunks"]:
        raise ApiError(f"Chunk {n!r} is out of range: this upload has chunks 0 to {info['chunks'] - 1}.", 422)
    index = int(n)
    expected = _expected_size(info, index)
    if length is not None and length != expected:
        raise ApiError(f"Chunk {index} must be {expected} bytes, got {length}.", 413 if length > expected else 422)
    part = folder / "chunks" / f".{index}.{secrets.token_hex(4)}.part"
    written = 0
    try:
        with open(part, "wb") as sink:
            while True:
                block = stream.read(1 << 20)
                if not block:
                    break
                written += len(block)
                if written > expected:
                    break
                sink.write(block)
    except BaseException:  # a full disk, a dropped connection: the part goes, so the space it held is free again
        part.unlink(missing_ok=True)
        raise
    if written != expected:
        part.unlink(missing_ok=True)
        raise ApiError(f"Chunk {index} must be {expected} bytes, got {written}: send it again.", 422)
    os.replace(part, folder / "chunks" / str(index))
    return {"chunk": index, "received": len(received(info, folder)), "chunks": info["chunks"]}


def assemble(info: dict, folder: Path, target: Path, check_stop=None, progress=None) -> Path:
    """The chunks, in order, as the file `target` (the chunks stay: an import cut short can run again);
    `progress(bytes)` hears how much of it is written after each chunk (a big file takes minutes on a network
    volume)."""
    written = 0
    with open(target, "wb") as sink:
        for n in range(info["chunks"]):
            if check_stop is not None:
                check_stop()
            with open(folder / "chunks" / str(n), "rb") as source:
                shutil.copyfileobj(source, sink, 1 << 20)
            written += _expected_size(info, n)
            if progress is not None:
                progress(written)
    return target


def _touched(folder: Path) -> float:
    """When a session last received a chunk (a chunk lands in chunks/), or was made; a folder cut short while it was
    made (neither there), when that was."""
    found = [path for path in (folder / "session.json", folder / "chunks") if path.exists()] or [folder]
    return max(path.stat().st_mtime for path in found)


def last_activity(root: Path, owner: dict) -> float | None:
    """When a session of `owner` last received a chunk (or was made); None when it has none on disk."""
    latest = None
    for info_path in root.glob("session-*/session.json") if root.is_dir() else ():
        info = read_json(info_path, None)
        if not isinstance(info, dict) or any(info.get(key) != value for key, value in owner.items()):
            continue
        try:
            latest = max(latest or 0.0, _touched(info_path.parent))
        except (OSError, ValueError):
            continue
    return latest


def sweep(root: Path) -> None:
    now = time.time()
    for folder in root.iterdir():
        # sessions may be resumed for two days after their last chunk; import and batch folders left by a crash are
        # orphans
        try:
            if not folder.is_dir():
                continue
            if folder.name.startswith("session-"):
                stale = now - _touched(folder) > SESSION_MAX_AGE_S
            else:
                stale = now - folder.stat().st_mtime > ORPHAN_MAX_AGE_S
            if stale:
                shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue
