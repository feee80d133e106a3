"""Exported datasets are immutable versions named by their content hash.

    trainer/datasets/.versions/<version>/    images + same-stem .txt captions + dataset.json; never changed
    trainer/datasets/<name> -> .versions/<version>    a name points at its latest version, like a branch

A training job records the version it trains on, so re-exporting under the same name never changes
the data under a queued, running or resumable job. Training tools that read `trainer/datasets/<name>/`
(the ai-toolkit layout) still find a folder there. Where the disk cannot hold symlinks, the name is a
folder of hard links with a `.version` file naming its version.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from studio.atomic import atomic_write_text, read_json
from studio.workspace import UnsafePathError, Workspace, confined, safe_name

VERSIONS = ".versions"
VERSION_FILE = ".version"
HASH_CHARS = 16
IDENTITY = ("name", "source_dataset_id", "trigger_word", "soft")  # what of dataset.json a version's hash covers
LEFTOVER_IDLE_S = 6 * 3600  # a build folder nothing wrote to for this long was left by a restart
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# what os.symlink raises on a disk that has no symlinks (any other error, a full disk first, is not that)
NO_SYMLINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


class ExportMissing(LookupError):
    """A name or version that is not (or no longer) on disk."""


class ExportInUse(RuntimeError):
    """The version cannot be deleted: a job or a name still needs it."""


class ContentHash:
    """The version of an export: a hash over each file's name and bytes, in name order, and over what its
    dataset.json says it is (IDENTITY): the same files exported from two datasets, or under two names, are two
    versions, each with a dataset.json naming its own (a push or a Train link of the second found the first's)."""

    def __init__(self):
        self._files: dict[str, str] = {}
        self._identity = ""

    def add_identity(self, meta: dict) -> None:
        self._identity = _json({key: meta[key] for key in IDENTITY if meta.get(key) not in (None, "", [])})

    def add_file(self, name: str, path: Path) -> None:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self._files[name] = digest.hexdigest()

    def add_digest(self, name: str, sha256_hex: str) -> None:
        """A file whose SHA-256 is already known (the import recorded it): no second read of its bytes."""
        self._files[name] = sha256_hex

    def add_text(self, name: str, text: str) -> None:
        self._files[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def version(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self._files):
            digest.update(f"{name}\0{self._files[name]}\n".encode())
        if self._identity:
            digest.update(f"dataset.json\0{self._identity}".encode())
        return digest.hexdigest()[:HASH_CHARS]


def check_version(version: str) -> str:
    if not isinstance(version, str) or len(version) != HASH_CHARS or not all(c in "0123456789abcdef" for c in version):
        raise UnsafePathError(f"{version!r} is not a dataset version.")
    return version


def versions_root(workspace: Workspace) -> Path:
    return workspace.exports / VERSIONS


def sweep_leftovers(workspace: Workspace, idle_s: float = LEFTOVER_IDLE_S) -> int:
    """Removes what an export (or an adoption, or a name's switch) cut short by a restart or a killed process left:
    its build folder beside the versions (converted pictures, and hard links that keep deleted images' bytes on the
    disk) and its half-switched name. Only those nothing wrote to for `idle_s`: one may be another process's,
    still at work. Returns how many went."""
    removed = 0
    places = ((versions_root(workspace), (".build-", ".adopt-")), (workspace.exports, (".link-", ".old-")))
    for folder, prefixes in places:
        for path in folder.iterdir() if folder.is_dir() else ():
            try:
                if not path.name.startswith(prefixes) or time.time() - path.lstat().st_mtime < idle_s:
                    continue
                if path.is_symlink() or not path.is_dir():
                    path.unlink()
                else:
                    shutil.rmtree(path)
                removed += 1
            except OSError:  # gone meanwhile, or not ours to remove: the next export tries again
                continue
    return removed


def version_dir(workspace: Workspace, version: str) -> Path:
    return confined(versions_root(workspace), check_version(version))


def hash_folder(folder: Path) -> str:
    """The version of an export folder (what a new export of the same files would be named)."""
    content = ContentHash()
    meta = read_json(folder / "dataset.json", None)
    if isinstance(meta, dict):
        content.add_identity(meta)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name == "dataset.json" or not path.is_file():
            continue
        content.add_file(path.name, path)
    return content.version()


@contextmanager
def changing(workspace: Workspace):
    """Held (across processes) while a version is stored and named, or deleted: an export that finds its version
    already there and points its name at it never does so while that version is being deleted."""
    root = versions_root(workspace)
    root.mkdir(parents=True, exist_ok=True)
    handle = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # the folder itself: no lock file among the versions
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # lets the lock go


def store_version(workspace: Workspace, built: Path, version: str) -> Path:
    """Move a finished build into place as `version`; an identical version already there wins."""
    target = version_dir(workspace, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        shutil.rmtree(built, ignore_errors=True)
    else:
        os.replace(built, target)
    return target


def resolve(workspace: Workspace, name: str) -> str | None:
    """The version `name` points at; None when there is no such export, or it is a folder of an older
    release not yet adopted (see `adopt_folder`)."""
    path = workspace.exports / safe_name(name)
    if path.is_symlink():
        target = os.readlink(path)
        version = Path(target).name
        return version if Path(target).parent.name == VERSIONS and len(version) == HASH_CHARS else None
    if path.is_dir():
        text = (path / VERSION_FILE).read_text("utf-8").strip() if (path / VERSION_FILE).is_file() else ""
        return text or None
    return None


def point(workspace: Workspace, name: str, version: str) -> None:
    """Make `name` point at `version`, atomically: a reader sees the old or the new export, never half."""
    name = safe_name(name)
    target = version_dir(workspace, version)
    link = workspace.exports / name
    tmp = workspace.exports / f".link-{name}-{secrets.token_hex(4)}"
    try:
        try:
            os.symlink(Path(VERSIONS) / version, tmp, target_is_directory=True)
        except OSError as exc:
            if exc.errno not in NO_SYMLINKS:
                raise
            _hardlink_copy(target, tmp)  # a disk without symlinks: a folder of hard links that names its version
            atomic_write_text(tmp / VERSION_FILE, version)
        if link.is_dir() and not link.is_symlink():
            old = workspace.exports / f".old-{name}-{secrets.token_hex(4)}"
            os.replace(link, old)
            os.replace(tmp, link)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, link)
    finally:  # a full disk half way: nothing of this try is left behind (the name still points where it did)
        if tmp.is_symlink():
            tmp.unlink()
        elif tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _hardlink_copy(source: Path, target: Path) -> None:
    target.mkdir()
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


def adopt_folder(workspace: Workspace, name: str) -> str | None:
    """An export folder written by an older release becomes a version and `name` points at it.
    Returns the version, or None when `name` is not such a folder."""
    folder = workspace.exports / safe_name(name)
    if folder.is_symlink() or not folder.is_dir() or (folder / VERSION_FILE).exists():
        return None
    staging = versions_root(workspace) / f".adopt-{secrets.token_hex(4)}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    _hardlink_copy(folder, staging)
    try:
        meta = read_json(staging / "dataset.json", {}) or {}
        meta = {**meta, "name": meta.get("name", name)}
        atomic_write_text(staging / "dataset.json", _json(meta))  # named before hashing: the name is in the hash
        version = hash_folder(staging)
        atomic_write_text(staging / "dataset.json", _json({**meta, "version": version}))
        target = version_dir(workspace, version)
        if not target.exists():
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    point(workspace, name, version)
    return version


def _json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def names(workspace: Workspace) -> dict[str, str]:
    """Every export name and the version it points at."""
    root = workspace.exports
    found = {}
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith("."):
            continue
        version = resolve(workspace, path.name)
        if version:
            found[path.name] = version
    return found


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, images) of one version."""
    size = images = 0
    for path in folder.iterdir():
        try:
            size += path.stat().st_size
        except OSError:
            continue
        images += path.suffix.lower() in IMAGE_SUFFIXES
    return size, images


def freed_by_deleting(workspace: Workspace, versions: list[str]) -> int:
    """The bytes the disk gets back when `versions` go: an image is a hard link its dataset and other versions
    share, and only a file whose every link is in those versions frees its bytes (captions and dataset.json mostly).
    """
    files: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [size, links, links among these versions]
    for version in versions:
        folder = version_dir(workspace, version)
        for path in folder.iterdir() if folder.is_dir() else ():
            try:
                stat = path.stat()
            except OSError:
                continue
            entry = files.setdefault((stat.st_dev, stat.st_ino), [stat.st_size, stat.st_nlink, 0])
            entry[2] += 1
    return sum(size for size, links, seen in files.values() if seen >= links)


def list_versions(workspace: Workspace) -> list[dict]:
    """Every stored version with its size, the names pointing at it and its metadata, newest first."""
    root = versions_root(workspace)
    pointed: dict[str, list[str]] = {}
    for name, version in names(workspace).items():
        pointed.setdefault(version, []).append(name)
    out = []
    for folder in root.iterdir() if root.is_dir() else []:
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        meta = read_json(folder / "dataset.json", {}) or {}
        size, images = folder_size(folder)
        out.append({"version": folder.name, "bytes": size, "images": images, "names": pointed.get(folder.name, []),
                    "source_dataset_id": meta.get("source_dataset_id"), "trigger_word": meta.get("trigger_word", ""),
                    "name": meta.get("name"), "exported_at": meta.get("exported_at") or folder.stat().st_mtime})
    return sorted(out, key=lambda v: v["exported_at"] or 0, reverse=True)


def delete_version(workspace: Workspace, version: str, used_by: list[str]) -> int:
    """Remove a version no name points at and no job needs (`used_by`: the ids of jobs that do).
    Returns the bytes freed (not those of images the dataset or another version still links)."""
    folder = version_dir(workspace, version)
    with changing(workspace):
        if not folder.is_dir():
            raise ExportMissing(f"There is no dataset version {version}.")
        pointing = [name for name, v in names(workspace).items() if v == version]
        if pointing:
            raise ExportInUse(f"Version {version} is the current export {', '.join(map(repr, pointing))}: export "
                              "again or delete the export name first.")
        if used_by:
            raise ExportInUse(f"Version {version} is needed by job(s) {', '.join(used_by[:5])}, which can still run "
                              "or resume (a deleted one once restored from Recently deleted): finish or delete those "
                              "first.")
        size = freed_by_deleting(workspace, [version])
        trash = versions_root(workspace) / f".deleted-{version}-{secrets.token_hex(4)}"
        os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return size


def require_version(workspace: Workspace, version: str, label: str = "") -> Path:
    """The folder of a version a job needs, or ExportMissing with a sentence saying what to do."""
    folder = version_dir(workspace, version)
    if not folder.is_dir():
        what = f" of {label!r}" if label else ""
        raise ExportMissing(f"The data this job trains on (dataset version {version}{what}) is no longer on disk: "
                            "clone the job onto a current export instead.")
    return folder
