"""The import job: uploaded files (ZIPs, Parquet files and images) become verified dataset images with thumbnails.

What the sources give is gathered by app.import_sources; each image is then checked here (it decodes, within the pixel
limit), given a free name, moved into the dataset and recorded (app.import_records)."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app import imaging
from app.caption_files import caption_key, decode_caption_file, is_metadata_name, metadata_captions
from app.import_limit import Left, holds_images
from app.import_records import FLUSH_EVERY, adopt_strays, flush, image_record
from app.import_sources import (
    LONE_CAPTION,
    SVG,
    UNSUPPORTED,
    Candidate,
    Found,
    Source,
    Video,
    add_table,
    add_videos,
    add_zip,
    is_archive,
    lone_captions,
    table_note,
    video_note,
)
from app.parquet_import import is_parquet_name
from app.store import Dataset, clean_filename
from app.video_frames import is_video_name
from studio.job_reporter import JobReporter
from studio.jobs import JobError
from studio.settings import Settings
from studio.text import name_list, plural
from studio.thumbnails import store_preview, thumbnail_bytes

# the names other modules (and tests) take from here
__all__ = ["CUT_SHORT", "DAMAGED", "FLUSH_EVERY", "LONE_CAPTION", "NOT_READABLE", "SVG", "UNSUPPORTED", "Candidate",
           "Source", "adopt_strays", "image_record", "plain_reason", "run_import"]

log = logging.getLogger(__name__)
_import_locks: dict[str, threading.Lock] = {}
_import_locks_guard = threading.Lock()
# what an import says of a file it could not take, in the user's words (not Pillow's exception names)
NOT_READABLE = "not an image the studio can read"
CUT_SHORT = "the file is cut short (an upload or copy that did not finish)"
DAMAGED = "the image is damaged: it could not be decoded"
MAX_SKIPPED_LISTED = 500  # skipped files an import's result lists one by one (listed_skips)


def _import_lock(dataset: Dataset) -> threading.Lock:
    # imports into one dataset run one after another, so name choices never race
    with _import_locks_guard:
        return _import_locks.setdefault(str(dataset.folder), threading.Lock())


def run_import(job: JobReporter, dataset: Dataset, sources: list[Source], settings: Settings, work_dir: Path,
               skip_known: bool = False, limit: int | None = None, spread: bool = False) -> dict:
    """Extract, verify, name and place every image; captions from `.txt` files go with their images.
    `skip_known` leaves out images the dataset already has (the same bytes): an import run again after
    an interruption adds only what the first run had not placed. `limit` takes the first images only (in the
    sources' order, then by name inside a ZIP, by row inside a Parquet file): once it is reached, the sources of
    images left are neither prepared (downloaded) nor read. With `spread`, the ZIPs and Parquet files (and then
    the videos) share what the loose images left of the limit (import_limit.Shares), each spread over its images or
    rows (the loose images were spread over the list by import_limit.split)."""
    found = Found(Left(limit, spread))
    archives = sum(1 for source in sources if is_archive(source.name.lower()))
    try:
        with _import_lock(dataset):
            for index, source in enumerate(sources):
                job.check_stop()
                lower = source.name.lower()
                share = found.share(archives, "archives") if is_archive(lower) else None  # before it downloads
                if (found.room() == 0 or share == 0) and holds_images(lower):
                    found.left.files += 1
                    continue
                if source.prepare is not None:
                    source.path = source.prepare(job)
                    lower = source.name.lower()  # a link's file is named once it has downloaded
                    if share is None and is_archive(lower):
                        share = found.share(max(archives, 1), "archives")
                if lower.endswith(".zip"):
                    add_zip(found, job, source, work_dir / f"zip-{index}", settings, share)
                elif is_parquet_name(lower):
                    add_table(found, job, source.path, source.name, work_dir / f"parquet-{index}", settings,
                              alone=len(sources) == 1, share=share)
                elif lower.endswith(".txt"):
                    with open(source.path, "rb") as handle:  # a caption is far shorter: the rest is not read
                        text = decode_caption_file(handle.read(64 * 1024))[0].strip()
                    found.loose_captions[caption_key(source.name)] = text
                    found.caption_files[caption_key(source.name)] = source.name
                elif is_metadata_name(lower):
                    listed, problem = metadata_captions(source.path, source.name)
                    found.listed_captions.update(listed)
                    if problem:
                        found.skipped.append({"name": source.name, "reason": problem})
                elif imaging.is_image_name(lower):
                    found.candidates.append(Candidate(source.name, clean_filename(source.name), source.path, None,
                                                      caption_key(source.name)))
                    found.photo_keys.add(caption_key(source.name))
                elif is_video_name(lower):
                    found.videos.append(Video(source.name, source.path, caption_key(source.name)))
                else:
                    reason = SVG if lower.endswith(".svg") else UNSUPPORTED
                    found.skipped.append({"name": source.name, "reason": reason})
            found.skipped.extend(lone_captions(found, sources))
            for candidate in found.candidates:
                if candidate.caption is None:
                    candidate.caption = found.caption_for(candidate.key)
            add_videos(found, job, work_dir, settings)
            result = _place_all(job, dataset, found.candidates, settings, found.skipped, skip_known,
                                table_note(found.tables) + video_note(found.videos_read) + found.left.note())
            if found.tables:
                result["tables"] = found.tables
            if found.videos_read:
                result["videos"] = found.videos_read
            if limit is not None:
                result["limit"] = found.left.public()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


def _check(candidate: Candidate, max_pixels: int):
    try:
        info = imaging.inspect_image(candidate.path, max_pixels, thumbnail=True)
    except imaging.ImageRejected as exc:
        return candidate, None, plain_reason(exc)
    thumb = info.thumbnail
    if thumb is None:  # a JPEG: decoded again at a reduced scale
        try:
            thumb = thumbnail_bytes(candidate.path)
        except Exception:  # the gallery regenerates a missing thumbnail on demand
            log.warning("thumbnail failed for %s", candidate.label, exc_info=True)
    return candidate, (info, thumb), None


def plain_reason(exc: imaging.ImageRejected) -> str:
    """Why an image was refused, in the user's words: Pillow's exception (kept as the rejection's context) says
    whether the file is no image at all, is cut short or is damaged; the studio's own sentences stay as they are."""
    cause = exc.__context__
    if isinstance(cause, UnidentifiedImageError):
        return NOT_READABLE
    if cause is None or isinstance(cause, (imaging.ImageRejected, Image.DecompressionBombError,
                                           Image.DecompressionBombWarning)):
        return str(exc)  # empty, or over the pixel limit: already a sentence
    if isinstance(cause, (OSError, SyntaxError)) and "truncat" in str(cause).lower():
        return CUT_SHORT
    return DAMAGED


def listed_skips(skipped: list[dict]) -> tuple[list[dict], int]:
    """(what the result lists of the skipped files, how many were skipped): the first MAX_SKIPPED_LISTED one by one
    and the rest in one entry (a ZIP of 200,000 notes must not make the result, kept with the job and sent to the
    page, tens of megabytes); an entry with a "count" (a Parquet file's rows past its own list) stands for that many."""
    count = sum(entry.get("count", 1) for entry in skipped)
    if len(skipped) <= MAX_SKIPPED_LISTED:
        return skipped, count
    kept = skipped[:MAX_SKIPPED_LISTED]
    rest = count - sum(entry.get("count", 1) for entry in kept)
    return kept + [{"name": f"{rest:,} more files", "count": rest,
                    "reason": f"skipped too (only the first {MAX_SKIPPED_LISTED} are listed)"}], count


def _place_all(job: JobReporter, dataset: Dataset, candidates: list[Candidate], settings: Settings,
               skipped: list[dict], skip_known: bool = False, note: str = "") -> dict:
    imported: list[str] = []
    renamed: list[dict] = []
    pending: dict[str, dict] = {}
    job.update(phase="importing", total=len(candidates), done=0, message=f"Checking {len(candidates)} images")
    adopted = adopt_strays(dataset, settings)
    with dataset.lock():
        taken = dataset.taken_stems()
        present = {r.get("sha256") for r in dataset.meta()["images"].values()} - {None}
    known = set(present) if skip_known else set()
    copies: list[str] = []  # imported, yet the same bytes as an image already here (or one before it in this import)
    try:
        _place_loop(job, dataset, candidates, settings, skipped, taken, imported, renamed, pending, known,
                    (present, copies))
    finally:
        # placed images are recorded even when the job is cancelled half way
        flush(dataset, pending, final=True)
    captions = sum(1 for c in candidates if c.caption)
    if not imported and not skipped:
        raise JobError("The upload held no images (.jpg, .jpeg, .png, .webp).")
    message = f"Imported {plural(len(imported), 'image')}"
    skipped, skipped_count = listed_skips(skipped)
    if skipped_count:
        message += f", skipped {skipped_count:,}"
    if adopted:
        message += f"; recovered {name_list(adopted)} that an interrupted import had placed"
    if copies:  # the same ZIP twice, say: said now, not found later among the flags
        n = len(copies)
        which = ("it is an exact copy of an image" if len(imported) == 1
                 else "all are exact copies of images" if n == len(imported)
                 else f"{n} of them {'is an exact copy of an image' if n == 1 else 'are exact copies of images'}")
        message += f"; {which} already here (Remove duplicates takes {'it' if n == 1 else 'them'} out)"
    job.update(message=message + note + ".")
    return {"imported": imported, "skipped": skipped, "renamed": renamed, "captions": captions, "adopted": adopted,
            "copies": copies}


def _place_loop(job, dataset, candidates, settings, skipped, taken, imported, renamed, pending, known,
                seen: tuple[set, list]) -> None:
    last_flush, flush_took = time.monotonic(), 0.0
    # decoding releases the GIL, so two threads keep both cores busy on big imports
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
        for done, (candidate, checked, problem) in enumerate(
                pool.map(lambda c: _check(c, settings.max_image_pixels), candidates), start=1):
            job.check_stop()
            if not problem and checked[0].sha256 in known:
                problem = "already in this dataset"
            if problem:
                skipped.append({"name": candidate.label, "reason": problem})
                job.update(done=done, current=candidate.label)
                continue
            with dataset.lock():
                name = dataset.unique_name(candidate.wanted, taken)
                target = dataset.folder / name
                shutil.move(str(candidate.path), target)
                if candidate.caption:
                    dataset.write_caption(name, candidate.caption)
            if name != candidate.wanted:
                renamed.append({"from": candidate.label, "to": name})
            info, thumb = checked
            if thumb:  # made at import: the gallery takes it for the picture's own (studio.thumbnails)
                store_preview(dataset.thumb_path(name), thumb, target.stat().st_mtime_ns)
            pending[name] = image_record(info, time.time())
            imported.append(name)
            present, copies = seen
            if info.sha256 in present:
                copies.append(name)
            present.add(info.sha256)
            job.update(done=done, current=name, imported=len(imported))
            since = time.monotonic() - last_flush
            # dataset.json is written whole, so its writes slow down as it grows: they wait ten times as long as the
            # last one took, to stay a small part of the import (10,000 images took three times as long without it)
            if (len(pending) >= FLUSH_EVERY or since > 2.0) and since > 10 * flush_took:
                started = time.monotonic()
                flush(dataset, pending)
                last_flush = time.monotonic()
                flush_took = last_flush - started
