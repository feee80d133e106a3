"""Atomic writes: a temp file beside the target, fsync, then os.replace."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644, make_folder: bool = True) -> None:
    """`make_folder=False`: FileNotFoundError when the folder is gone, instead of making it again (a job deleted
    while something wrote its state)."""
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str, mode: int = 0o644, make_folder: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode, make_folder)


def atomic_write_json(path: Path, value, mode: int = 0o644, make_folder: bool = True) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", mode, make_folder)


def place_file(source: Path, target: Path) -> None:
    """`target` becomes `source`'s content atomically: a hard link when the disk allows (no extra space; the
    studio replaces files, never writes into them, so a link is as good as a copy), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


TEMP_IDLE_S = 3600.0  # a temp file nothing wrote to for an hour is no write under way (a copy writes all along)


def sweep_temp_files(folder: Path | None, idle_s: float = TEMP_IDLE_S) -> int:
    """Removes the temp files (`.<name>.<random>.tmp`) that a write or place_file killed half way left in `folder`
    (a LoRA's copy is hundreds of MB), once nothing wrote to them for `idle_s`. Returns how many went."""
    removed = 0
    for path in folder.iterdir() if folder is not None and folder.is_dir() else ():
        try:
            if not (path.name.startswith(".") and path.name.endswith(".tmp")) or path.is_symlink() \
                    or not path.is_file() or time.time() - path.stat().st_mtime < idle_s:
                continue
            path.unlink()
            removed += 1
        except OSError:  # gone meanwhile
            continue
    return removed


def read_json(path: Path, default=None):
    """Read JSON, returning `default` when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return default
