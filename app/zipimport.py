"""Safe, streaming ZIP extraction into a staging folder.

Nothing in the archive is trusted: entry names are checked one by one (no `..`, absolute paths,
drive letters or symlinks), and sizes are counted while decompressing, so a ZIP bomb is stopped
by the bytes it actually produces, not by what its headers claim.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from app import imaging
from app.caption_files import METADATA_MAX_BYTES, caption_key, decode_caption_file, is_metadata_name, metadata_captions
from app.import_limit import spread_indices
from app.video_frames import is_video_name
from studio.disk import is_disk_full
from studio.job_reporter import JobReporter
from studio.jobs import JobError

CAPTION_MAX_BYTES = 64 * 1024
# entries a ZIP may list: its table of contents is read whole into memory (about 0.5 KB an entry) before anything
# else, so a small archive of a million empty entries would take the importer's memory and minutes of its time
MAX_ENTRIES = 200_000
LONE_CAPTION = "caption file with no image of its name in the archive: put it beside its image"
RATIO_FLOOR_BYTES = 1 << 20  # tiny entries (a caption of repeated words) may compress very well
# a drive-like prefix: any letter and a colon ("C:", and "º:" too: no image name needs one)
_DRIVE = re.compile(r"^[^\W\d_]:")
_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass
class Extracted:
    images: list[tuple[str, Path]] = field(default_factory=list)  # (path in archive, staged file)
    tables: list[tuple[str, Path]] = field(default_factory=list)  # Parquet files: (path in archive, staged file)
    videos: list[tuple[str, Path]] = field(default_factory=list)  # videos to take frames from: (path in archive, file)
    captions: dict[tuple[str, str], str] = field(default_factory=dict)  # caption_files.caption_key -> text
    skipped: list[dict] = field(default_factory=list)
    left: int = 0  # images not extracted: beyond the limit


def entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this entry must not be extracted, or None when its name and type are safe."""
    raw = info.filename
    name = raw.replace("\\", "/")
    if "\x00" in name:
        return "unsafe name (NUL byte)"
    if name.startswith("/"):
        return "unsafe path (absolute)"
    if _DRIVE.match(name):
        return "unsafe path (drive letter)"
    if any(part == ".." for part in name.split("/")):
        return "unsafe path (contains '..')"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link (not extracted)"
    return None


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    base = parts[-1].lower()
    return "__MACOSX" in parts or base.startswith("._") or base in _JUNK


def _beyond(infos: list[zipfile.ZipInfo], limit: int | None, spread: bool = False) -> set[str]:
    """The image entries past the first `limit` by name, or with `spread` all but `limit` spread over them (none
    without a limit): they are not extracted."""
    if limit is None:
        return set()
    images = sorted(info.filename for info in infos if not info.is_dir() and entry_problem(info) is None
                    and not _is_junk(info.filename.replace("\\", "/")) and imaging.is_image_name(info.filename))
    if spread:
        return set(images) - {images[i] for i in spread_indices(len(images), limit)}
    return set(images[limit:])


def _check_entry_count(archive: Path, label: str) -> None:
    """JobError when the archive's end record lists more than MAX_ENTRIES entries, read before its table of
    contents is; a damaged end record is left to zipfile, which says so."""
    try:
        with open(archive, "rb") as handle:
            end = zipfile._EndRecData(handle)  # the end record (ZIP64 too), as zipfile itself reads it
    except (OSError, AttributeError, ValueError, struct.error):
        return
    entries = end[zipfile._ECD_ENTRIES_TOTAL] if end else 0
    if entries > MAX_ENTRIES:
        raise JobError(f"{label} lists {entries:,} files, over the limit of {MAX_ENTRIES:,} for one archive: "
                       "split it into smaller ZIPs, or leave out what is not an image or a caption.")


def extract_zip(archive: Path, staging: Path, job: JobReporter, max_total_bytes: int, max_ratio: int,
                label: str, limit: int | None = None, spread: bool = False) -> Extracted:
    """Extract images, Parquet files, videos and captions (`.txt` files, metadata.jsonl/.csv) of `archive` into
    `staging` (flat, numbered names); with a `limit`, only that many images, the first by name or with `spread`
    spread over all of them (the size limit counts only those)."""
    out = Extracted()
    listed: dict[tuple[str, str], str] = {}
    loose: dict[tuple[str, str], str] = {}  # caption_key -> the .txt's name in the archive
    _check_entry_count(archive, label)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise JobError(f"{label} is damaged or not a ZIP archive: nothing was imported from it.") from None
    with zf:
        try:
            infos = zf.infolist()
        except (zipfile.BadZipFile, ValueError):
            raise JobError(f"{label} is damaged: its table of contents cannot be read.") from None
        if any(info.flag_bits & 0x1 for info in infos):
            raise JobError(f"{label} is password-protected (encrypted): unzip it and upload the images instead.")
        beyond = _beyond(infos, limit, spread)
        out.left = len(beyond)
        declared = sum(info.file_size for info in infos if info.filename not in beyond)
        if declared > max_total_bytes:
            raise JobError(f"{label} would unpack to {declared / 2**20:,.0f} MB, over the limit of "
                           f"{max_total_bytes / 2**20:,.0f} MB (ZIP_MAX_TOTAL_MB).")
        staging.mkdir(parents=True, exist_ok=True)
        written = 0
        files = [info for info in infos if not info.is_dir()]
        job.update(phase="extracting", total=len(files), done=0, message=f"Unpacking {label}")
        for index, info in enumerate(files):
            job.check_stop()
            name = info.filename.replace("\\", "/")
            problem = entry_problem(info)
            if (problem is None and _is_junk(name)) or info.filename in beyond:
                continue
            ext = os.path.splitext(name)[1].lower()
            metadata = is_metadata_name(name)
            if problem is None and not (imaging.is_image_name(name) or ext in {".txt", ".parquet"} or metadata
                                        or is_video_name(name)):
                problem = "not an image (skipped)"
            if problem is None and ext == ".txt" and info.file_size > CAPTION_MAX_BYTES:
                problem = "caption file larger than 64 KB (skipped)"
            if problem is None and metadata and info.file_size > METADATA_MAX_BYTES:
                problem = f"larger than {METADATA_MAX_BYTES // 2**20} MB (its captions were not imported)"
            if problem:
                out.skipped.append({"name": f"{label}/{name}", "reason": problem})
                continue
            target = staging / f"{index:06d}{ext}"
            try:
                written += _copy_entry(zf, info, target, max_total_bytes - written, max_total_bytes, max_ratio, label)
            except zipfile.BadZipFile:
                target.unlink(missing_ok=True)
                out.skipped.append({"name": f"{label}/{name}", "reason": "damaged entry (checksum or data error)"})
                continue
            if metadata:
                captions, trouble = metadata_captions(target, name)
                target.unlink()
                listed.update(captions)
                if trouble:
                    out.skipped.append({"name": f"{label}/{name}", "reason": trouble})
            elif ext == ".txt":
                text = decode_caption_file(target.read_bytes())[0].strip()
                target.unlink()
                out.captions[caption_key(name)] = text
                loose[caption_key(name)] = name
            elif ext == ".parquet":
                out.tables.append((name, target))
            elif is_video_name(name):
                out.videos.append((name, target))
            else:
                out.images.append((name, target))
            job.update(done=index + 1, current=name)
    for key, text in listed.items():  # a .txt beside the image wins
        out.captions.setdefault(key, text)
    # a caption file whose image is not in the archive is said, not dropped without a word (an image left out by
    # the limit, or skipped with its own reason, still counts as there)
    pictures = {caption_key(info.filename.replace("\\", "/")) for info in infos
                if imaging.is_image_name(info.filename) or is_video_name(info.filename)}
    out.skipped.extend({"name": f"{label}/{name}", "reason": LONE_CAPTION} for key, name in loose.items()
                       if key not in pictures)
    return out


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, limit: int,
                max_ratio: int, label: str) -> int:
    """Stream one entry to disk, stopping as soon as it breaks the size or ratio limit."""
    produced = 0
    compressed = max(info.compress_size, 1)
    try:
        with zf.open(info) as source, open(target, "wb") as sink:
            while True:
                block = source.read(1 << 20)
                if not block:
                    break
                produced += len(block)
                if produced > budget:
                    raise JobError(f"{label} unpacks to more than the limit of {limit / 2**20:,.0f} MB "
                                   "(ZIP_MAX_TOTAL_MB): it looks like a ZIP bomb, so nothing was imported.")
                if produced > RATIO_FLOOR_BYTES and produced / compressed > max_ratio:
                    raise JobError(f"{label} has an entry compressed more than {max_ratio}:1 (ZIP_MAX_RATIO): "
                                   "it looks like a ZIP bomb, so nothing was imported.")
                sink.write(block)
    except (JobError, zipfile.BadZipFile):
        target.unlink(missing_ok=True)
        raise
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        target.unlink(missing_ok=True)
        if is_disk_full(exc):  # the pod's disk, not the entry: the import fails with the disk-full sentence
            raise
        raise zipfile.BadZipFile(str(exc)) from None
    return produced

