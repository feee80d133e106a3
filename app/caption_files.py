"""Captions that arrive with images (a ZIP, a bucket prefix, a hub dataset): a `.txt` beside each image, or one
`metadata.jsonl` / `metadata.csv` per folder, Hugging Face's image-folder layout (a `file_name` column, the
caption in `text`, `caption`, `prompt` or `description`). A `.txt` beside an image wins over a metadata row.

Captions are paired by folder and stem, so `a/001.jpg` never takes the caption of `b/001.txt`.
"""

from __future__ import annotations

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

Key = tuple[str, str]  # (folder, stem casefolded)


def caption_key(path: str) -> Key:
    """The pairing key of an image or caption file named by its path in the archive, bucket or repo."""
    folder, base = posixpath.split(path.replace("\\", "/"))
    return unicodedata.normalize("NFC", folder.strip("/")), posixpath.splitext(clean_filename(base))[0].casefold()


def is_metadata_name(path: str) -> bool:
    return posixpath.basename(path.replace("\\", "/")).lower() in METADATA_NAMES


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
    text = path.read_bytes().decode("utf-8-sig", "replace")
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
    if bad:
        return captions, f"{bad} row(s) without a file_name and a caption were left out"
    return captions, None
