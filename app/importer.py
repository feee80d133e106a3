"""The import job: uploaded files (ZIPs, Parquet files and images) become verified dataset images with thumbnails."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app import imaging
from app.caption_files import caption_key, decode_caption_file, is_metadata_name, metadata_captions
from app.import_limit import Left, Shares, holds_images
from app.parquet_import import Unreadable, extract_parquet, is_parquet_name
from app.store import Dataset, clean_filename, refresh_flags
from app.video_frames import LIVE_PHOTO_MOTION, clock, extract_frames, is_video_name
from app.video_frames import Unreadable as VideoUnreadable
from app.zipimport import extract_zip
from studio.job_reporter import JobReporter
from studio.jobs import JobError
from studio.settings import Settings
from studio.text import name_list, plural
from studio.thumbnails import store_preview, thumbnail_bytes

log = logging.getLogger(__name__)
_import_locks: dict[str, threading.Lock] = {}
_import_locks_guard = threading.Lock()
FLUSH_EVERY = 50
# what an import says of a file it could not take, in the user's words (not Pillow's exception names)
NOT_READABLE = "not an image the studio can read"
CUT_SHORT = "the file is cut short (an upload or copy that did not finish)"
DAMAGED = "the image is damaged: it could not be decoded"
LONE_CAPTION = "caption file with no image of its name: upload it together with its image"
UNSUPPORTED = "not an image, video, ZIP or Parquet file (skipped)"
SVG = "SVG is not supported: convert it to PNG"


@dataclass
class Source:
    """One uploaded file: its name as the user sent it and where it lies in the uploads folder.

    `prepare`, when set, produces the file inside the job first (chunked uploads are assembled there,
    so the request that starts the import returns at once)."""

    name: str
    path: Path | None = None
    prepare: Callable[[JobReporter], Path] | None = None


@dataclass
class Candidate:
    label: str  # shown in messages: "photos.zip/a/b.jpg" or "b.jpg"
    wanted: str  # the file name it should get
    path: Path
    caption: str | None
    key: tuple[str, str] = ("", "")  # folder and stem, to pair it with a loose caption (caption_files.caption_key)


def _is_archive(name: str) -> bool:
    """A ZIP or a Parquet file: a source of many images (a spread limit gives each its part)."""
    return name.endswith(".zip") or is_parquet_name(name)


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
    found = _Found(Left(limit, spread))
    archives = sum(1 for source in sources if _is_archive(source.name.lower()))
    try:
        with _import_lock(dataset):
            for index, source in enumerate(sources):
                job.check_stop()
                lower = source.name.lower()
                share = found.share(archives, "archives") if _is_archive(lower) else None  # before it downloads
                if (found.room() == 0 or share == 0) and holds_images(lower):
                    found.left.files += 1
                    continue
                if source.prepare is not None:
                    source.path = source.prepare(job)
                    lower = source.name.lower()  # a link's file is named once it has downloaded
                    if share is None and _is_archive(lower):
                        share = found.share(max(archives, 1), "archives")
                if lower.endswith(".zip"):
                    _add_zip(found, job, source, work_dir / f"zip-{index}", settings, share)
                elif is_parquet_name(lower):
                    _add_table(found, job, source.path, source.name, work_dir / f"parquet-{index}", settings,
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
                    found.videos.append(_Video(source.name, source.path, caption_key(source.name)))
                else:
                    reason = SVG if lower.endswith(".svg") else UNSUPPORTED
                    found.skipped.append({"name": source.name, "reason": reason})
            found.skipped.extend(_lone_captions(found, sources))
            for candidate in found.candidates:
                if candidate.caption is None:
                    candidate.caption = found.caption_for(candidate.key)
            _add_videos(found, job, work_dir, settings)
            result = _place_all(job, dataset, found.candidates, settings, found.skipped, skip_known,
                                _table_note(found.tables) + _video_note(found.videos_read) + found.left.note())
            if found.tables:
                result["tables"] = found.tables
            if found.videos_read:
                result["videos"] = found.videos_read
            if limit is not None:
                result["limit"] = found.left.public()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


@dataclass
class _Found:
    """What an import's sources gave so far."""

    left: Left
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    loose_captions: dict[tuple[str, str], str] = field(default_factory=dict)
    caption_files: dict[tuple[str, str], str] = field(default_factory=dict)  # the name of each loose caption's file
    listed_captions: dict[tuple[str, str], str] = field(default_factory=dict)  # metadata.jsonl / .csv files
    tables: list[dict] = field(default_factory=list)  # what each Parquet file gave: its rows, the columns read
    videos: list[_Video] = field(default_factory=list)  # read once every image is found (see _add_videos)
    photo_keys: set[tuple[str, str]] = field(default_factory=set)  # folder and stem of each photo, in its ZIP
    videos_read: list[dict] = field(default_factory=list)  # what each video gave
    shares: tuple[str, Shares] | None = None  # a spread limit's parts for the archives, then for the videos
    shared_from: int = 0  # the images found before the first of those sources

    def room(self) -> int | None:
        return self.left.room(len(self.candidates))

    def share(self, sources: int, kind: str) -> int | None:
        """What the next of `sources` archives (or videos: `kind`) may give: the room, or with a spread limit its
        part of what the sources before them left (import_limit.Shares, made at the first of them)."""
        room = self.room()
        if room is None or not self.left.spread:
            return room
        if self.shares is None or self.shares[0] != kind:
            self.shares, self.shared_from = (kind, Shares(room, sources)), len(self.candidates)
        shares = self.shares[1]
        shares.gave(len(self.candidates) - self.shared_from - shares.given)
        return min(room, shares.next())

    def caption_for(self, key: tuple[str, str]) -> str | None:
        """A loose `.txt` of this folder and stem, else a metadata file's caption for it."""
        return self.loose_captions.get(key, self.listed_captions.get(key))


def _lone_captions(found: _Found, sources: list[Source]) -> list[dict]:
    """A loose caption file whose image (or video) is not in the upload: said, not silently dropped. An image left
    out by the limit still counts as there."""
    pictures = {caption_key(source.name) for source in sources
                if imaging.is_image_name(source.name) or is_video_name(source.name)}
    return [{"name": name, "reason": LONE_CAPTION} for key, name in found.caption_files.items() if key not in pictures]


@dataclass
class _Video:
    label: str  # "clip.mov", "phone.zip/clips/dog.mp4"
    path: Path
    key: tuple[str, str]  # folder and stem (inside its ZIP: with the ZIP's name), to find its Live Photo and caption
    caption: str | None = None  # a caption file beside it in its ZIP: every frame gets it


def _add_zip(found: _Found, job: JobReporter, source: Source, staging: Path, settings: Settings,
             share: int | None) -> None:
    """The images of a ZIP (at most `share` of them), with their captions, and the rows of the Parquet files
    inside it."""
    staged = extract_zip(source.path, staging, job, settings.zip_max_total_mb * 2**20, settings.zip_max_ratio,
                         source.name, limit=found.room() if share is None else share, spread=found.left.spread)
    found.skipped.extend(staged.skipped)
    found.left.entries += staged.left
    for inner, path in staged.images:
        found.candidates.append(Candidate(f"{source.name}/{inner}", clean_filename(inner), path,
                                          staged.captions.get(caption_key(inner))))
        found.photo_keys.add(caption_key(f"{source.name}/{inner}"))
    for inner, path in staged.videos:
        found.videos.append(_Video(f"{source.name}/{inner}", path, caption_key(f"{source.name}/{inner}"),
                                   staged.captions.get(caption_key(inner))))
    for number, (inner, path) in enumerate(staged.tables):
        _add_table(found, job, path, f"{source.name}/{inner}", staging.with_name(f"{staging.name}-table-{number}"),
                   settings)


def _add_table(found: _Found, job: JobReporter, path: Path, label: str, staging: Path, settings: Settings,
               alone: bool = False, share: int | None = None) -> None:
    """The rows of a Parquet file, each image with its caption (at most `share` of them, else what is left of the
    limit; none once it is reached). A file that cannot be read fails the import when it is all there is, and is
    skipped with its reason beside other files."""
    room = found.room() if share is None else min(share, found.room())
    if room == 0:
        found.left.files += 1
        return
    try:
        unpacked = extract_parquet(path, staging, job, settings.zip_max_total_mb * 2**20, label, limit=room,
                                   spread=found.left.spread)
    except Unreadable as exc:
        if alone:
            raise
        found.skipped.append({"name": label, "reason": exc.reason})
        shutil.rmtree(staging, ignore_errors=True)
        return
    found.skipped.extend(unpacked.skipped)
    found.left.entries += unpacked.left
    found.candidates.extend(Candidate(row.label, row.name, row.path, row.caption) for row in unpacked.rows)
    found.tables.append({"file": label, "rows": unpacked.read, "image_column": unpacked.image_column,
                         "caption_column": unpacked.caption_column})


def _add_videos(found: _Found, job: JobReporter, work_dir: Path, settings: Settings) -> None:
    """The sharpest frames of each video (app.video_frames), captioned by a caption file named like the video.
    A video named like a photo of the same folder is the moving part of an iPhone Live Photo: its photo is the
    picture, so it is left out. A video that cannot be read fails the import when it is all the import holds,
    and is skipped with its reason beside other images or videos."""
    alone = len(found.videos) == 1 and not found.candidates
    for number, video in enumerate(found.videos):
        if video.key in found.photo_keys:
            found.skipped.append({"name": video.label, "reason": LIVE_PHOTO_MOTION})
            continue
        room = found.share(len(found.videos), "videos")
        if room == 0:
            found.left.files += 1
            continue
        stem = clean_filename(video.label.rsplit("/", 1)[-1]).rsplit(".", 1)[0]
        try:
            taken = extract_frames(video.path, work_dir / f"video-{number}", job, video.label, stem,
                                   settings.video_max_frames, settings.max_image_pixels, limit=room,
                                   every=settings.video_frame_seconds)
        except VideoUnreadable as exc:
            if alone:
                raise
            found.skipped.append({"name": video.label, "reason": exc.reason})
            continue
        caption = video.caption if video.caption is not None else found.caption_for(video.key)
        found.left.entries += taken.left
        found.candidates.extend(Candidate(f"{video.label} at {clock(frame.time)}", frame.name, frame.path, caption)
                                for frame in taken.frames)
        found.videos_read.append({"file": video.label, "seconds": round(taken.seconds, 1),
                                  "frames": len(taken.frames), "alike": taken.alike, "hdr": taken.hdr})


def _video_note(videos: list[dict]) -> str:
    """What the message says of videos: how many frames they gave, and how many alike ones were left out."""
    if not videos:
        return ""
    frames, alike = sum(v["frames"] for v in videos), sum(v["alike"] for v in videos)
    note = f"; {plural(frames, 'frame')} from {plural(len(videos), 'video')}"
    return note + (f" ({plural(alike, 'frame')} alike the one before left out)" if alike else "")


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


def _table_note(tables: list[dict]) -> str:
    """What the message says of Parquet files: the caption column read, or that there was none."""
    if not tables:
        return ""
    columns = sorted({t["caption_column"] for t in tables if t["caption_column"]})
    if not columns:
        return "; the table has no caption column: auto-caption the images"
    quoted = ", ".join(f"'{c}'" for c in columns)
    return f"; captions from the table's column {quoted}" if len(columns) == 1 else \
        f"; captions from the tables' columns {quoted}"


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
        _flush(dataset, pending, final=True)
    captions = sum(1 for c in candidates if c.caption)
    if not imported and not skipped:
        raise JobError("The upload held no images (.jpg, .jpeg, .png, .webp).")
    message = f"Imported {plural(len(imported), 'image')}"
    if skipped:
        message += f", skipped {len(skipped)}"
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


def adopt_strays(dataset: Dataset, settings: Settings) -> list[str]:
    """Images an earlier import moved into the folder but could not record (the disk filled up, the
    process was killed): recorded now, so none stays invisible and none is lost. A file that does not
    decode is left where it is."""
    with dataset.lock():
        meta = dataset.meta()
        strays = sorted(p for p in dataset.folder.iterdir() if not p.name.startswith(".") and p.is_file()
                        and imaging.is_image_name(p.name) and p.name not in meta["images"])
        adopted = []
        for path in strays:
            try:
                info = imaging.inspect_image(path, settings.max_image_pixels)
            except imaging.ImageRejected as exc:
                log.warning("left %s in %s unrecorded: %s", path.name, dataset.id, exc)
                continue
            meta["images"][path.name] = image_record(info, path.stat().st_mtime)
            adopted.append(path.name)  # its thumbnail is made by the gallery on first view
        if adopted:
            refresh_flags(meta)
            dataset.save_meta(meta)
            log.info("recorded %d image(s) an interrupted import left in %s", len(adopted), dataset.id)
    return adopted


def _place_loop(job, dataset, candidates, settings, skipped, taken, imported, renamed, pending, known,
                seen: tuple[set, list]) -> None:
    last_flush = time.monotonic()
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
            if len(pending) >= FLUSH_EVERY or time.monotonic() - last_flush > 2.0:
                _flush(dataset, pending)
                last_flush = time.monotonic()


def image_record(info: imaging.ImageInfo, added_at: float) -> dict:
    """What dataset.json keeps of one image."""
    return {"width": info.width, "height": info.height, "bytes": info.bytes, "sha256": info.sha256,
            "dhash": info.dhash, "sharpness": info.sharpness, "added_at": added_at}


def _flush(dataset: Dataset, pending: dict[str, dict], final: bool = False) -> None:
    if not pending and not final:
        return
    with dataset.lock():
        meta = dataset.meta()
        meta["images"].update(pending)
        refresh_flags(meta)
        dataset.save_meta(meta)
    pending.clear()
