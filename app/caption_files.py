"""Captions that arrive with images (a ZIP, a bucket prefix, a hub dataset): a `.txt` beside each image, or one
`metadata.jsonl` / `metadata.csv` per folder, Hugging Face's image-folder layout (a `file_name` column, the
caption in `text`, `caption`, `prompt` or `description`). A `.txt` beside an image wins over a metadata row.

Captions are paired by folder and stem, so `a/001.jpg` never takes the caption of `b/001.txt`.

Caption files come from Windows editors too: UTF-16 with its byte-order mark (Notepad's "Unicode"), or Windows-1252
(Excel's plain CSV). `decode_caption_file` reads those as what they are instead of as UTF-8 with holes and NULs.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import posixpath
import unicodedata
from pathlib import Path

from app.store import clean_filename

METADATA_NAMES = {"metadata.jsonl", "metadata.csv"}
METADATA_MAX_BYTES = 32 * 2**20
CAPTION_COLUMNS = ("text", "caption", "prompt", "description")
NOT_UTF8 = "read as Windows-1252, not UTF-8: if accented letters look wrong, save it as UTF-8 and import it again"

Key = tuple[str, str]  # (folder, stem casefolded)


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
