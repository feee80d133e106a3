"""What an import's sources give: the images to place (Candidate), found in loose files, ZIPs, Parquet files and
videos, with their captions, and what was skipped with its reason (the import job is importer.run_import)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app import imaging
from app.caption_files import caption_key
from app.import_limit import Left, Shares
from app.parquet_import import Unreadable, extract_parquet, is_parquet_name
from app.store import clean_filename
from app.video_frames import LIVE_PHOTO_MOTION, clock, extract_frames, is_video_name
from app.video_frames import Unreadable as VideoUnreadable
from app.zipimport import extract_zip
from studio.job_reporter import JobReporter
from studio.settings import Settings
from studio.text import plural

# what an import says of a file it could not take, in the user's words
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


@dataclass
class Video:
    label: str  # "clip.mov", "phone.zip/clips/dog.mp4"
    path: Path
    key: tuple[str, str]  # folder and stem (inside its ZIP: with the ZIP's name), to find its Live Photo and caption
    caption: str | None = None  # a caption file beside it in its ZIP: every frame gets it


def is_archive(name: str) -> bool:
    """A ZIP or a Parquet file: a source of many images (a spread limit gives each its part)."""
    return name.endswith(".zip") or is_parquet_name(name)


@dataclass
class Found:
    """What an import's sources gave so far."""

    left: Left
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    loose_captions: dict[tuple[str, str], str] = field(default_factory=dict)
    caption_files: dict[tuple[str, str], str] = field(default_factory=dict)  # the name of each loose caption's file
    listed_captions: dict[tuple[str, str], str] = field(default_factory=dict)  # metadata.jsonl / .csv files
    tables: list[dict] = field(default_factory=list)  # what each Parquet file gave: its rows, the columns read
    videos: list[Video] = field(default_factory=list)  # read once every image is found (see add_videos)
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


def lone_captions(found: Found, sources: list[Source]) -> list[dict]:
    """A loose caption file whose image (or video) is not in the upload: said, not silently dropped. An image left
    out by the limit still counts as there."""
    pictures = {caption_key(source.name) for source in sources
                if imaging.is_image_name(source.name) or is_video_name(source.name)}
    return [{"name": name, "reason": LONE_CAPTION} for key, name in found.caption_files.items() if key not in pictures]


def add_zip(found: Found, job: JobReporter, source: Source, staging: Path, settings: Settings,
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
        found.videos.append(Video(f"{source.name}/{inner}", path, caption_key(f"{source.name}/{inner}"),
                                  staged.captions.get(caption_key(inner))))
    for number, (inner, path) in enumerate(staged.tables):
        add_table(found, job, path, f"{source.name}/{inner}", staging.with_name(f"{staging.name}-table-{number}"),
                  settings)


def add_table(found: Found, job: JobReporter, path: Path, label: str, staging: Path, settings: Settings,
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


def add_videos(found: Found, job: JobReporter, work_dir: Path, settings: Settings) -> None:
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


def video_note(videos: list[dict]) -> str:
    """What the message says of videos: how many frames they gave, and how many alike ones were left out."""
    if not videos:
        return ""
    frames, alike = sum(v["frames"] for v in videos), sum(v["alike"] for v in videos)
    note = f"; {plural(frames, 'frame')} from {plural(len(videos), 'video')}"
    return note + (f" ({plural(alike, 'frame')} alike the one before left out)" if alike else "")


def table_note(tables: list[dict]) -> str:
    """What the message says of Parquet files: the caption column read, or that there was none."""
    if not tables:
        return ""
    columns = sorted({t["caption_column"] for t in tables if t["caption_column"]})
    if not columns:
        return "; the table has no caption column: auto-caption the images"
    quoted = ", ".join(f"'{c}'" for c in columns)
    return f"; captions from the table's column {quoted}" if len(columns) == 1 else \
        f"; captions from the tables' columns {quoted}"
