"""Images kept inside a Parquet file (what `datasets.push_to_hub` and the hub's converter write): each row's image
becomes a file, its caption column the image's caption.

The image column is the one the file's Hugging Face features call an Image (a struct of `bytes` and `path`), else
the first such struct, else a binary column named like an image, else a list of images (`Sequence(Image)`: every
image of a row becomes a file with the row's caption); a binary column named like an image comes first when its
whole name says so ("jpg", as a WebDataset turned into Parquet has it), else when a part of it does ("image_bytes").
The caption column is the first of `text`, `caption`, `prompt`, `description`, `txt` (a WebDataset's) and
`sentence` (a list of captions takes the first), else the first text column whose name holds one of them
("blip_caption", "text_en", "sentences"). A text column may be dictionary-encoded (a pandas category).

Nothing in the file is trusted: sizes are checked from the footer before a row is read and counted again while
writing (ZIP_MAX_TOTAL_MB, like a ZIP), rows are read a few at a time, the kind of each image is taken from its
bytes (the importer then decodes every one), and names from the rows are reduced to plain file names.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from app import imaging
from app.caption_files import CAPTION_COLUMNS
from app.import_limit import spread_indices
from app.store import clean_filename
from studio.job_reporter import JobReporter
from studio.jobs import JobError

BATCH_ROWS = 16
MAX_GROUP_BYTES = 4 * 2**30  # a row group is held whole in memory while it is read: more is a hostile or odd file
BATCH_BYTES = 256 * 2**20  # rows are read a few at a time (pyarrow still holds the row group they are in)
# rows skipped (no image, not an image) listed one by one; the others are counted in one line: a table of a million
# rows of something else must not make an import's result (kept with the job, sent to the page) tens of megabytes
MAX_SKIPPED_LISTED = 100
IMAGE_NAMES = ("image", "img", "picture", "photo", "png", "jpg", "jpeg")
CAPTION_NAMES = CAPTION_COLUMNS + ("txt", "sentence")  # a WebDataset's caption; COCO's "sentences"
# by Pillow's name for what the bytes hold; "MPO" is a JPEG with more pictures after it (a phone's gain map or
# depth map): a JPEG to every reader
FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "AVIF": ".avif", "HEIF": ".heic",
           "TIFF": ".tiff", "BMP": ".bmp"}


@dataclass
class Row:
    name: str  # a plain file name, unique within the file
    path: Path  # the staged image
    caption: str | None
    label: str  # "train.parquet row 12 (cat.jpg)", for messages


@dataclass
class Unpacked:
    rows: list[Row] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    image_column: str = ""
    caption_column: str | None = None
    read: int = 0  # rows read
    left: int = 0  # rows not read: beyond the limit
    unlisted: int = 0  # images skipped beyond the first MAX_SKIPPED_LISTED, counted only

    def skip(self, name: str, reason: str) -> None:
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append({"name": name, "reason": reason})
        else:
            self.unlisted += 1


class Unreadable(JobError):
    """The file is damaged, not Parquet, or holds no images (unlike a file over the size limit, which is refused
    like a ZIP bomb): beside other files, an import skips it and says why."""

    def __init__(self, label: str, reason: str):
        super().__init__(f"{label} {reason}: nothing was imported from it.")
        self.reason = reason


def is_parquet_name(name: str) -> bool:
    return name.lower().endswith(".parquet")


def _features(schema) -> dict:
    """The Hugging Face features the file declares ({} when it declares none)."""
    try:
        features = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]
    except (KeyError, TypeError, ValueError):
        return {}
    return features if isinstance(features, dict) else {}


def _is_image_struct(arrow_type) -> bool:
    import pyarrow as pa

    if not pa.types.is_struct(arrow_type):
        return False
    fields = {arrow_type.field(i).name: arrow_type.field(i).type for i in range(arrow_type.num_fields)}
    return "bytes" in fields and (pa.types.is_binary(fields["bytes"]) or pa.types.is_large_binary(fields["bytes"]))


def _is_image_list(arrow_type) -> bool:
    import pyarrow as pa

    return (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)) and \
        _is_image_struct(arrow_type.value_type)


def _declares_images(feature) -> tuple[bool, bool]:
    """(an Image, a list of Images): what a Hugging Face feature declares."""
    if isinstance(feature, list):  # the old spelling of a list: [feature]
        return False, bool(feature) and _declares_images(feature[0])[0]
    if not isinstance(feature, dict):
        return False, False
    if feature.get("_type") == "Image":
        return True, False
    return False, feature.get("_type") in {"Sequence", "List", "LargeList"} and \
        _declares_images(feature.get("feature"))[0]


def _is_text(arrow_type) -> bool:
    import pyarrow as pa

    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_dictionary(arrow_type):  # what pandas writes for a category column
        arrow_type = arrow_type.value_type
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def choose_columns(schema) -> tuple[str | None, str | None]:
    """(the image column, the caption column) of an Arrow schema; either may be None."""
    import pyarrow as pa

    features = _features(schema)
    columns = {name: schema.field(name).type for name in schema.names}
    declared = [name for name, feature in features.items() if _declares_images(feature)[0] and name in columns]
    structs = [name for name, kind in columns.items() if _is_image_struct(kind)]
    binary = [name for name, kind in columns.items() if pa.types.is_binary(kind) or pa.types.is_large_binary(kind)]
    binaries = [name for name in binary if name.lower() in IMAGE_NAMES] or \
        [name for name in binary if set(re.split(r"[^a-z]+", name.lower())) & set(IMAGE_NAMES)]
    lists = [name for name, feature in features.items() if _declares_images(feature)[1] and name in columns] or \
        [name for name, kind in columns.items() if _is_image_list(kind)]
    images = declared or structs or binaries or lists
    image = "image" if "image" in images else (images[0] if images else None)
    texts = [name for name, kind in columns.items() if _is_text(kind)]
    caption = next((name for wanted in CAPTION_NAMES for name in texts if name.lower() == wanted), None)
    if caption is None:
        caption = next((name for name in texts if any(word in name.lower() for word in CAPTION_NAMES)), None)
    return image, caption


def _groups_for(parquet, limit: int | None) -> int:
    """How many row groups hold the first `limit` rows (all of them without a limit)."""
    metadata = parquet.metadata
    if limit is None:
        return metadata.num_row_groups
    rows = 0
    for group in range(metadata.num_row_groups):
        rows += metadata.row_group(group).num_rows
        if rows >= limit:
            return group + 1
    return metadata.num_row_groups


def _chunk_sizes(parquet, columns: list[str], groups: int | None = None) -> list[int]:
    """What each column chunk of the chosen columns unpacks to, by the footer (a page never decompresses to more
    than it declares; a dictionary-encoded value repeated in many rows is counted once here, so the rows are
    counted again while they are written), in the first `groups` row groups (all by default)."""
    metadata = parquet.metadata
    sizes = []
    for group in range(metadata.num_row_groups if groups is None else groups):
        sizes += _chunk_sizes_of(metadata.row_group(group), columns)
    return sizes


def _largest_group(parquet, columns: list[str]) -> int:
    """What the chosen columns of the biggest row group unpack to: pyarrow holds a whole row group in memory
    while its rows are read, however small the batches."""
    metadata = parquet.metadata
    return max((sum(_chunk_sizes_of(metadata.row_group(group), columns)) for group in range(metadata.num_row_groups)),
               default=0)


def _chunk_sizes_of(row_group, columns: list[str]) -> list[int]:
    return [row_group.column(index).total_uncompressed_size for index in range(row_group.num_columns)
            if row_group.column(index).path_in_schema.split(".")[0] in columns]


def _declared_bytes(parquet, columns: list[str], limit: int | None) -> int:
    return sum(_chunk_sizes(parquet, columns, _groups_for(parquet, limit)))


def _batch_rows(parquet, columns: list[str]) -> int:
    """Rows per read: one value is at most its column chunk, so a batch of these stays within BATCH_BYTES."""
    largest = max(_chunk_sizes(parquet, columns), default=0)
    return max(1, min(BATCH_ROWS, BATCH_BYTES // max(largest, 1)))


def _images(value) -> list[tuple[bytes | None, str]]:
    """(each image's bytes, the name it had) of one cell: one image, or a list of them."""
    return [_image_bytes(item) for item in value] if isinstance(value, list) else [_image_bytes(value)]


def _image_bytes(value) -> tuple[bytes | None, str]:
    """(the image's bytes, the name it had) of one image of a cell."""
    if isinstance(value, dict):
        path = value.get("path")
        return value.get("bytes"), path if isinstance(path, str) else ""
    return (value, "") if isinstance(value, bytes) else (None, "")


def _caption(value) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _extension(data: bytes) -> tuple[str | None, str]:
    """The image's extension from its bytes, or (None, why it is not taken)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or "unknown"
    except Exception:  # Pillow raises many types for what is not an image
        return None, "not an image"
    ext = FORMATS.get(kind)
    if ext is None or ext not in imaging.IMAGE_EXTENSIONS:
        return None, f"a {kind} image (the studio takes {', '.join(sorted(imaging.IMAGE_EXTENSIONS))})"
    return ext, ""


class _Names:
    """Plain file names for the rows, no two with the same stem (so captions beside them cannot mix): the name a
    row's image had, else `<file>-<row>`."""

    def __init__(self, stem: str):
        self.stem, self.taken = stem, set()

    def __call__(self, original: str, row: int, ext: str, part: str = "") -> str:
        """`part` tells apart the images of one row ("-2")."""
        stem = os.path.splitext(clean_filename(original))[0] if original.strip() else ""
        stem = stem if stem and stem != "image" else f"{self.stem}-{row:06d}{part}"
        if stem.casefold() in self.taken:
            stem = f"{stem}-{row:06d}{part}"
        self.taken.add(stem.casefold())
        return f"{stem}{ext}"


def extract_parquet(source: Path, staging: Path, job: JobReporter, max_total_bytes: int, label: str,
                    stem: str | None = None, limit: int | None = None, spread: bool = False) -> Unpacked:
    """Every row's image of `source` staged in `staging` (numbered files) with its caption; JobError when the file
    cannot be read, holds no image column or unpacks to more than `max_total_bytes`. Rows without a name of their
    own are named `<stem>-<row>` (the label's stem unless given). With a `limit`, reading stops at that many images
    (the size limit counts the row groups that hold them); with `spread` too, the rows taken are spread over the
    whole file (every row group is read; the rows between are left)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError, ValueError):
        raise Unreadable(label, "is damaged or not a Parquet file") from None
    with parquet:
        image_column, caption_column = choose_columns(parquet.schema_arrow)
        if image_column is None:
            raise Unreadable(label, f"has no image column (columns: {', '.join(parquet.schema_arrow.names) or 'none'})")
        columns = [image_column] + ([caption_column] if caption_column else [])
        biggest = _largest_group(parquet, columns)
        if biggest > MAX_GROUP_BYTES:
            raise JobError(f"{label} keeps {biggest / 2**20:,.0f} MB of images in one row group, and the studio reads "
                           f"a row group at once (at most {MAX_GROUP_BYTES / 2**30:g} GB): save it again with smaller "
                           "row groups (pyarrow: row_group_size=100), or upload the images in a ZIP.")
        rows = parquet.metadata.num_rows
        wanted = set(spread_indices(rows, limit)) if spread and limit is not None else None
        declared = _declared_bytes(parquet, columns, limit) if wanted is None else _wanted_bytes(parquet, columns,
                                                                                                 wanted)
        if declared > max_total_bytes:
            raise JobError(f"{label} would unpack to {declared / 2**20:,.0f} MB, over the limit of "
                           f"{max_total_bytes / 2**20:,.0f} MB (ZIP_MAX_TOTAL_MB).")
        out = Unpacked(image_column=image_column, caption_column=caption_column)
        staging.mkdir(parents=True, exist_ok=True)
        job.update(phase="extracting", total=rows if limit is None or wanted is not None else min(rows, limit),
                   done=0, message=f"Reading {label}")
        try:
            out.read = _read_rows(parquet, columns, out, staging, job, max_total_bytes, label,
                                  _Names(clean_filename(stem or Path(label).stem) or "row"), limit, wanted)
            out.left = rows - (out.read if wanted is None else len(wanted))
            if out.unlisted:
                out.skipped.append({"name": f"{label}: {out.unlisted:,} more rows", "count": out.unlisted,
                                    "reason": f"skipped too (only the first {MAX_SKIPPED_LISTED} are listed): see "
                                              "that the table's image column holds the images"})
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:  # the disk's, not the file's
                raise
            at = len(out.rows) + len(out.skipped) + out.unlisted
            raise Unreadable(label, f"is damaged (row {at} could not be read)") from None
    return out


def _read_rows(parquet, columns: list[str], out: Unpacked, staging: Path, job: JobReporter, max_total_bytes: int,
               label: str, names: _Names, limit: int | None, wanted: set[int] | None = None) -> int:
    """Stages the rows' images into `out` until `limit` images (only the rows in `wanted`, when given); returns
    how many rows were read."""
    image_column, caption_column = out.image_column, out.caption_column
    written, row = 0, -1
    for batch in _batches(parquet, columns, wanted):
        job.check_stop()
        for row, values in batch:
            if limit is not None and len(out.rows) >= limit:
                return row
            images = _images(values.get(image_column))
            caption = _caption(values.get(caption_column)) if caption_column else None
            if not images:
                out.skip(f"{label} row {row}", "no image in this row")
            for index, (data, original) in enumerate(images):
                if limit is not None and len(out.rows) >= limit:
                    break
                part = f"-{index + 1}" if len(images) > 1 else ""
                where = f"{label} row {row}" + (f" image {index + 1}" if part else "") + \
                    (f" ({original})" if original else "")
                ext, problem = _extension(data) if data else (None, "no image in this row" if not original else
                                                             "the image is not inside the file, only its path")
                if ext is None:
                    out.skip(where, problem)
                    continue
                written += len(data)
                if written > max_total_bytes:
                    raise JobError(f"{label} unpacks to more than the limit of {max_total_bytes / 2**20:,.0f} MB "
                                   "(ZIP_MAX_TOTAL_MB): nothing was imported from it.")
                target = staging / f"{row:06d}{part}{ext}"
                target.write_bytes(data)
                out.rows.append(Row(names(original, row, ext, part), target, caption, where))
        job.update(done=row + 1, current=f"row {row + 1}")
    return row + 1


def _batches(parquet, columns: list[str], wanted: set[int] | None) -> Iterator[list[tuple[int, dict]]]:
    """(row number, values) of every row a few rows at a time; with `wanted`, only those rows, read row group by row
    group: a group none is wanted from is not read, and the other rows of a group never become Python bytes."""
    if wanted is None:
        row = 0
        for batch in parquet.iter_batches(batch_size=_batch_rows(parquet, columns), columns=columns):
            yield list(enumerate(batch.to_pylist(), start=row))
            row += batch.num_rows
        return
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        count = parquet.metadata.row_group(group).num_rows
        local = sorted(row - start for row in wanted if start <= row < start + count)
        if local:
            table = parquet.read_row_group(group, columns=columns).take(local)
            yield [(start + index, values) for index, values in zip(local, table.to_pylist(), strict=True)]
        start += count


def _wanted_bytes(parquet, columns: list[str], wanted: set[int]) -> int:
    """What the rows in `wanted` unpack to, by the footer: each row group's share for the rows taken from it (a row
    group is read whole, one at a time, and only the rows taken are staged)."""
    metadata, start, total = parquet.metadata, 0, 0
    for group in range(metadata.num_row_groups):
        count = metadata.row_group(group).num_rows
        taken = sum(1 for row in wanted if start <= row < start + count)
        if taken:
            total += sum(_chunk_sizes_of(metadata.row_group(group), columns)) * taken // count
        start += count
    return total
