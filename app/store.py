"""Datasets on disk: `datasets/<id>/` holds images, same-stem `.txt` captions and `dataset.json`.

`dataset.json` keeps the name, trigger word and one record per image (size, hashes, flags). Every
change to it or to a caption happens under the dataset lock (a thread lock plus an fcntl file lock,
so another process serving the same workspace waits too).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import re
import secrets
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app import imaging
from app.dataset_names import NAME_MAX, validate_name
from app.sharpness import soft_flag
from studio.atomic import atomic_write_json, atomic_write_text, read_json
from studio.text import over_caption_limit
from studio.workspace import UnsafePathError, Workspace, confined, safe_name


class NotFound(LookupError):
    """The dataset or image does not exist."""


class Conflict(RuntimeError):
    """The change clashes with the current state (e.g. the caption was edited elsewhere)."""

    def __init__(self, message: str, current: dict | None = None):
        super().__init__(message)
        self.current = current or {}


META_FILE = "dataset.json"
ORIGINALS_DIR = ".originals"
TRASH_DIR = ".trash"  # deleted images in a dataset's folder; deleted datasets in the datasets folder
_DRIVE = re.compile(r"[A-Za-z]:")  # refused by `confined` (a Windows drive)
_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_held = threading.local()


@contextmanager
def dataset_lock(folder: Path, create: bool = True):
    """Exclusive, re-entrant within a thread; the file lock covers other processes. `create=False`: a
    missing folder (a deleted dataset) raises NotFound instead of being made again."""
    key = str(folder)
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(key, threading.RLock())
    with lock:
        depth = getattr(_held, "depth", {})
        _held.depth = depth
        if depth.get(key, 0) == 0:
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            try:
                handle = open(folder / ".lock", "a+")
            except FileNotFoundError:
                raise NotFound(f"Dataset {folder.name!r} does not exist (it was deleted).") from None
            fcntl.flock(handle, fcntl.LOCK_EX)
            depth[key + ":fd"] = handle
        depth[key] = depth.get(key, 0) + 1
        try:
            yield
        finally:
            depth[key] -= 1
            if depth[key] == 0:
                handle = depth.pop(key + ":fd")
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:40].strip("-") or "dataset"


def clean_filename(name: str) -> str:
    """A plain, safe file name from an uploaded one: keeps unicode and spaces, drops folders."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").split("/")[-1])
    name = re.sub(r'[\x00-\x1f\x7f<>:"|?*]', "_", name).strip().lstrip(". ")  # no hidden files, no "." or ".."
    stem, ext = os.path.splitext(name)
    if len(ext) > 16:  # not an extension ("photo.jpgaaaa…"): all of it is the name, cut to length below
        stem, ext = name, ""
    while len(stem.encode("utf-8")) > 120:
        stem = stem[:-1]
    stem = stem.strip().lstrip(". ") or "image"
    return stem + ext.lower()


def caption_version(path: Path) -> int:
    """The caption file's mtime in µs (0 when there is none): clients send it back to detect conflicts.

    Microseconds keep the number exact in JavaScript (below 2**53)."""
    try:
        return path.stat().st_mtime_ns // 1000
    except FileNotFoundError:
        return 0


def text_hash(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Dataset:
    id: str
    folder: Path
    _real: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # resolved folders, by folder

    @property
    def meta_path(self) -> Path:
        return self.folder / META_FILE

    @property
    def thumbs(self) -> Path:
        return self.folder / ".thumbs"

    def lock(self):
        return dataset_lock(self.folder, create=False)  # a job still holding a deleted dataset must not revive it

    def meta(self) -> dict:
        meta = read_json(self.meta_path, None)
        if not isinstance(meta, dict):
            raise NotFound(f"Dataset {self.id!r} has no readable {META_FILE}.")
        meta.setdefault("images", {})
        meta.setdefault("trigger_word", "")
        return meta

    def save_meta(self, meta: dict) -> None:
        meta["updated_at"] = time.time()
        atomic_write_json(self.meta_path, meta)

    # images and captions -------------------------------------------------------------------
    def inside(self, root: Path, file: str = "") -> Path:
        """`confined(root, file)` for a plain file name (from safe_name), `root` resolved once per Dataset: a listing
        asks for thousands of captions, and resolving each whole path again took most of its time. Only a symlink
        (or a name `confined` refuses) can lead out of a resolved folder: it goes through `confined`."""
        real = self._real.get(root) or self._real.setdefault(root, root.resolve())
        path = real / file
        if file and (file in {".", ".."} or _DRIVE.match(file) or "/" in file or "\\" in file or path.is_symlink()):
            return confined(root, file)
        return path

    def image_path(self, name: str) -> Path:
        safe_name(name)
        if not imaging.is_image_name(name):
            raise UnsafePathError(f"{name!r} is not an image name.")
        return self.inside(self.folder, name)

    def require_image(self, name: str) -> Path:
        path = self.image_path(name)
        if not path.is_file():
            raise NotFound(f"Image {name!r} is not in this dataset.")
        return path

    def caption_path(self, name: str) -> Path:
        return self.inside(self.folder, os.path.splitext(safe_name(name))[0] + ".txt")

    def read_caption(self, name: str) -> str | None:
        """The image's caption; None when it has none, or when its caption file is a link put in by hand that leads
        outside the dataset (never read: the gallery and exports go on without it, and saving one says why)."""
        try:
            # a byte-order mark (a file put in by hand) is not text
            return self.caption_path(name).read_text("utf-8-sig")
        except (FileNotFoundError, IsADirectoryError, UnsafePathError):
            return None
        except UnicodeDecodeError:
            return self.caption_path(name).read_bytes().decode("utf-8-sig", "replace")

    def caption_version(self, name: str) -> int:
        """caption_version of the image's caption file; 0 for a link leading outside the dataset (never read)."""
        try:
            return caption_version(self.caption_path(name))
        except UnsafePathError:
            return 0

    def read_captions(self, names) -> dict[str, str | None]:
        """read_caption for many images, each file read again only when it changed (app.caption_cache)."""
        from app.caption_cache import read_captions

        return read_captions(self, names)

    def write_caption(self, name: str, text: str) -> int:
        path = self.caption_path(name)
        atomic_write_text(path, text)
        return caption_version(path)

    def original_path(self, name: str) -> Path:
        """Where an edited image's file as it came is kept (until Revert, or its deletion)."""
        return self.inside(self.folder / ORIGINALS_DIR, safe_name(name))

    def thumb_path(self, name: str) -> Path:
        return self.inside(self.thumbs, safe_name(name) + ".webp")

    def view_path(self, name: str, original: bool = False) -> Path:
        """Where the full-size JPEG of an image browsers cannot show (HEIC) is kept, or of its original."""
        return self.inside(self.thumbs, safe_name(name) + (".original.jpg" if original else ".view.jpg"))

    def forget_previews(self, name: str) -> None:
        """Drops an image's thumbnail and views, for a file replaced by an older one (Revert) or gone."""
        for path in (self.thumb_path(name), self.view_path(name), self.view_path(name, original=True)):
            path.unlink(missing_ok=True)

    def unique_name(self, wanted: str, taken_stems: set[str]) -> str:
        """`wanted` or `stem_2.ext`, ... so no image or caption is ever overwritten (stems are unique
        case-insensitively because the caption file is named by the stem)."""
        stem, ext = os.path.splitext(wanted)
        candidate, n = wanted, 1
        while stem_key(candidate) in taken_stems or (self.folder / candidate).exists():
            n += 1
            candidate = f"{stem}_{n}{ext}"
        taken_stems.add(stem_key(candidate))
        return candidate

    def taken_stems(self) -> set[str]:
        return {stem_key(p.name) for p in self.folder.iterdir() if not p.name.startswith(".")}

    def image_names(self) -> list[str]:
        return sorted(self.meta()["images"], key=natural_key)


def stem_key(name: str) -> str:
    return os.path.splitext(name)[0].casefold()


def rev_of(record: dict) -> str:
    """What changes with an image's file (an edit, a revert): the start of its SHA-256."""
    return (record.get("sha256") or "")[:12]


def natural_key(name: str):
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def refresh_flags(meta: dict) -> None:
    """Recompute duplicate / near-duplicate / small / soft flags for every image record.

    `small` carries the size and the limit, so the gallery can say how small ("320x240, below 512 px")."""
    images = meta["images"]
    dupes = imaging.duplicate_flags(images)
    for name, record in images.items():
        record["flags"] = dict(dupes.get(name, {}))
        small = imaging.small_flag(record.get("width", 0), record.get("height", 0))
        if small:
            record["flags"]["small"] = small
        soft = soft_flag(record.get("sharpness"))
        if soft:
            record["flags"]["soft"] = soft


class DatasetStore:
    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.root = workspace.datasets

    def get(self, dataset_id: str) -> Dataset:
        folder = self.workspace.dataset_dir(dataset_id)
        if not (folder / META_FILE).is_file():
            raise NotFound(f"Dataset {dataset_id!r} does not exist.")
        return Dataset(dataset_id, folder)

    def all(self) -> list[Dataset]:
        found = []
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if folder.is_dir() and not folder.name.startswith(".") and (folder / META_FILE).is_file():
                found.append(Dataset(folder.name, folder))
        return found

    def names(self, but: str | None = None) -> set[str]:
        """The datasets' names, casefolded (but the dataset `but`'s)."""
        names = set()
        for dataset in self.all():
            if dataset.id != but:
                try:
                    names.add(str(dataset.meta().get("name") or dataset.id).casefold())
                except NotFound:
                    continue  # unreadable: listed with its problem elsewhere
        return names

    def check_name_free(self, name: str, but: str | None = None) -> None:
        """NameTaken (with a free name like it) when another dataset is called `name`, letter case aside."""
        taken = self.names(but)
        if name.casefold() in taken:
            raise NameTaken(name, free_name(name, taken))

    def _held_ids(self) -> set[str]:
        """Ids a new dataset does not take though no folder has them: a deleted dataset's (its restore gets it back,
        with its exports) and the dataset an export was made from (its versions are not a new dataset's)."""
        trash = self.root / TRASH_DIR
        held = {entry.name.partition("-")[2] for entry in trash.iterdir()} if trash.is_dir() else set()
        exports = self.workspace.exports
        for folder in exports.iterdir() if exports.is_dir() else ():
            meta = read_json(folder / "dataset.json", None)
            if isinstance(meta, dict) and isinstance(meta.get("source_dataset_id"), str):
                held.add(meta["source_dataset_id"])
        return held

    def create(self, name: str, trigger_word: str = "") -> Dataset:
        """A new, empty dataset; a name another dataset has is made free ("My cat 2"), as a second folder of one
        name is in a file manager (the page asks before; a script's second run just gets the next name)."""
        name = validate_name(name)
        with dataset_lock(self.root):
            taken = self.names()
            if name.casefold() in taken:
                name = free_name(name, taken)
            base = slugify(name)
            dataset_id = base
            held = self._held_ids()
            while dataset_id in held or (self.root / dataset_id).exists():
                dataset_id = f"{base}-{secrets.token_hex(2)}"
            folder = self.workspace.dataset_dir(dataset_id)
            folder.mkdir(parents=True)
            dataset = Dataset(dataset_id, folder)
            now = time.time()
            dataset.save_meta({"id": dataset_id, "name": name, "trigger_word": validate_trigger(trigger_word),
                               "created_at": now, "images": {}})
        return dataset


class NameTaken(ValueError):
    """Another dataset has this name; `free` is one like it that none has."""

    def __init__(self, name: str, free: str):
        super().__init__(f"A dataset named {name!r} exists already: choose another name, such as {free!r}.")
        self.free = free


def free_name(name: str, taken: set[str]) -> str:
    """`name` with the first number after it (2, 3, ...) that makes it a name no dataset has (casefolded `taken`),
    cut to NAME_MAX."""
    for n in itertools.count(2):
        candidate = f"{name[:NAME_MAX - len(str(n)) - 1].rstrip()} {n}"
        if candidate.casefold() not in taken:
            return candidate
    raise AssertionError("unreachable")


def validate_trigger(word) -> str:
    if word is None:
        return ""
    if not isinstance(word, str):
        raise ValueError("The trigger word must be text.")
    word = " ".join(word.split())
    if len(word) > 60:
        raise ValueError("The trigger word is too long (60 characters at most).")
    return word


def summary(dataset: Dataset) -> dict:
    """What the index page shows for one dataset."""
    meta = dataset.meta()
    images = meta["images"]
    captioned = long_captions = total_bytes = flagged = 0
    flag_keys = {"duplicates": "duplicate_of", "similar": "similar_to", "small": "small", "soft": "soft"}
    flag_counts = dict.fromkeys(flag_keys, 0)
    captions = dataset.read_captions(images)
    for name, record in images.items():  # one pass: 3,000 images were five
        total_bytes += record.get("bytes", 0)
        text, flags = captions[name], record.get("flags") or {}
        if text and text.strip():
            captioned += 1
            long_captions += over_caption_limit(text) is not None
        flagged += bool(flags)
        for kind, key in flag_keys.items():
            flag_counts[kind] += bool(flags.get(key))
    cover = meta.get("cover") if meta.get("cover") in images else min(images, key=natural_key, default=None)
    return {
        "id": dataset.id,
        "name": meta.get("name", dataset.id),
        "trigger_word": meta.get("trigger_word", ""),
        "images": len(images),
        "captioned": captioned,
        "long_captions": long_captions,  # longer than the text encoder reads
        "flagged": flagged,
        "flag_counts": flag_counts,
        "bytes": total_bytes,
        "cover": cover,
        "cover_rev": rev_of(images[cover]) if cover else None,  # changes when it is edited
        "created_at": meta.get("created_at"),
        "updated_at": meta.get("updated_at"),
        "last_export": meta.get("last_export"),
    }
