"""Captions that arrive with images (a ZIP, a bucket prefix, a hub dataset): a `.txt` beside each image, or one
`metadata.jsonl` / `metadata.csv` per folder, Hugging Face's image-folder layout (a `file_name` column, the
caption in `text`, `caption`, `prompt` or `description`). A `.txt` beside an image wins over a metadata row.

Captions are paired by folder and stem, so `a/001.jpg` never takes the caption of `b/001.txt`.

Caption files come from Windows editors too: UTF-16 with its byte-order mark (Notepad's "Unicode"), or Windows-1252
(Excel's plain CSV). `decode_caption_file` reads those as what they are instead of as UTF-8 with holes and NULs.

`StagedWrites` writes the captions of a bulk change (find & replace over thousands of captions) each atomically, with
one sync of the disk for all of them.
"""

from __future__ import annotations

import codecs
import csv
import ctypes
import functools
import io
import json
import logging
import os
import posixpath
import tempfile
import unicodedata
from pathlib import Path

from app.store import clean_filename

METADATA_NAMES = {"metadata.jsonl", "metadata.csv"}
METADATA_MAX_BYTES = 32 * 2**20
CAPTION_COLUMNS = ("text", "caption", "prompt", "description")
NOT_UTF8 = "read as Windows-1252, not UTF-8: if accented letters look wrong, save it as UTF-8 and import it again"

Key = tuple[str, str]  # (folder, stem casefolded)
log = logging.getLogger(__name__)


def caption_key(path: str) -> Key:
    """The pairing key of an image or caption file named by its path in the archive, bucket or repo."""
    folder, base = posixpath.split(path.replace("\\", "/"))
    return unicodedata.normalize("NFC", folder.strip("/")), posixpath.splitext(clean_filename(base))[0].casefold()


def is_metadata_name(path: str) -> bool:
    return posixpath.basename(path.replace("\\", "/")).lower() in METADATA_NAMES


def decode_caption_file(data: bytes) -> tuple[str, str | None]:
    """The text of a caption or metadata file, and a note when it was not UTF-8 (None when it was): UTF-8 with or
    without a byte-order mark, UTF-16 with one; any other bytes are read as Windows-1252, which takes every byte."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace"), None
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # UTF-8 read up to a limit, cut inside its last letter
            return data[:exc.start].decode("utf-8-sig", "replace"), None
        return data.decode("cp1252", "replace"), NOT_UTF8


def _caption_of(row: dict) -> str | None:
    for column in CAPTION_COLUMNS:
        value = row.get(column)
        if isinstance(value, list):  # several captions per image: the first one
            value = next((v for v in value if isinstance(v, str) and v.strip()), None)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _rows(text: str, csv_format: bool):
    if csv_format:
        yield from csv.DictReader(io.StringIO(text))
        return
    for line in text.splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                yield None


def metadata_captions(path: Path, name: str) -> tuple[dict[Key, str], str | None]:
    """The captions a metadata file gives, keyed like `caption_key`, and a sentence when some or all of it could not
    be read (None when all was)."""
    if path.stat().st_size > METADATA_MAX_BYTES:
        return {}, f"larger than {METADATA_MAX_BYTES // 2**20} MB (its captions were not imported)"
    text, encoding_note = decode_caption_file(path.read_bytes())
    folder = posixpath.dirname(name.replace("\\", "/"))
    captions: dict[Key, str] = {}
    bad = 0
    try:
        for row in _rows(text, name.lower().endswith(".csv")):
            file_name = row.get("file_name") if isinstance(row, dict) else None
            caption = _caption_of(row) if isinstance(file_name, str) and file_name.strip() else None
            if caption is None:
                bad += 1
                continue
            captions[caption_key(posixpath.normpath(posixpath.join(folder, file_name.strip())))] = caption
    except csv.Error:
        return captions, "not a readable CSV file (its captions were not imported)"
    if bad and not captions:
        return captions, ("no row has a file_name and a caption (" + ", ".join(CAPTION_COLUMNS) +
                          "): its captions were not imported")
    notes = [f"{bad} row(s) without a file_name and a caption were left out" if bad else None, encoding_note]
    return captions, "; ".join(note for note in notes if note) or None


@functools.cache
def _libc_syncfs():
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def _syncfs(folder: Path) -> bool:
    """Everything written to the file system holding `folder` reaches the disk (Linux's syncfs); False where the call
    is missing or fails, for the caller to fsync file by file instead."""
    syncfs = _libc_syncfs()
    if syncfs is None:
        return False
    fd = os.open(folder, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


class StagedWrites:
    """Many text files, each replaced atomically as studio.atomic does (a temp file beside it, on the disk before
    os.replace puts it in place), with one sync for all: an fsync per file costs ~1-3 ms, so a find & replace over
    3,000 captions spent seconds there. `with StagedWrites({key: (path, text)}) as staged:` writes every temp file and
    syncs them (a failure there, a full disk, changes no file); `staged.place(key, text)` then puts one in place. Temp
    files not placed (a change cut short) are removed on leaving."""

    def __init__(self, files: dict[str, tuple[Path, str]]):
        self.files = files
        self.staged: dict[str, str] = {}  # key -> its temp file, until placed
        self.placed: set[Path] = set()  # the folders of the files placed

    def __enter__(self) -> StagedWrites:
        try:
            for key, (path, text) in self.files.items():
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                self.staged[key] = tmp
                with os.fdopen(fd, "wb") as handle:
                    handle.write(text.encode("utf-8"))
                os.chmod(tmp, 0o644)
            if not all(_syncfs(folder) for folder in {path.parent for path, _ in self.files.values()}):
                for tmp in self.staged.values():
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        except BaseException:
            self._discard()
            raise
        return self

    def place(self, key: str, text: str) -> Path | None:
        """Puts the file staged as `key` in place and returns its path; None when `text` is not what was staged for
        it (write it the usual way)."""
        if key not in self.staged or self.files[key][1] != text:
            return None
        path = self.files[key][0]
        os.replace(self.staged.pop(key), path)
        self.placed.add(path.parent)
        return path

    def __exit__(self, *exc) -> None:
        self._discard()
        for folder in self.placed:  # the renames reach the disk too
            _fsync_folder(folder)

    def _discard(self) -> None:
        for tmp in self.staged.values():
            Path(tmp).unlink(missing_ok=True)
        self.staged.clear()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot sync a folder: its files are synced, the renames come with the next
        log.debug("fsync of folder %s failed", folder, exc_info=True)
    finally:
        os.close(fd)
