"""A downloaded dataset (serverless.dataset) as the engine reads it: every file decoded with Pillow exactly like an
upload to the dataset manager, what is not an image skipped with the reason, each image with its same-stem `.txt`
caption or the one a metadata.jsonl / metadata.csv in its folder gives, and a video's sharpest frames in its place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from app.imaging import IMAGE_EXTENSIONS, ImageRejected, inspect_image, training_copy
from serverless.dataset import quiet
from studio.atomic import atomic_write_json, read_json


@dataclass
class PreparedDataset:
    folder: Path
    images: int
    captions: int
    skipped: list[dict] = field(default_factory=list)


def prepare_images(raw_dir: Path, out_dir: Path, max_pixels: int, name: str = "dataset",
                   max_frames: int = 60, frame_seconds: float = 2.0) -> PreparedDataset:
    """Copy every decodable image (+ same-stem .txt caption) from `raw_dir` into a flat `out_dir`; a video gives
    its sharpest frames first (see _frames_of_videos)."""
    from app.caption_files import caption_key, is_metadata_name, metadata_captions

    out_dir.mkdir(parents=True, exist_ok=True)
    prepared = PreparedDataset(folder=out_dir, images=0, captions=0)
    taken: set[str] = set()
    listed: dict = {}  # captions from metadata.jsonl / metadata.csv files, for images without a .txt
    for path in sorted(raw_dir.rglob("*")):
        if path.is_file() and not path.is_symlink() and is_metadata_name(path.name):
            captions, problem = metadata_captions(path, path.relative_to(raw_dir).as_posix())
            listed.update(captions)
            if problem:
                prepared.skipped.append({"file": path.relative_to(raw_dir).as_posix(), "reason": problem})
    _frames_of_videos(raw_dir, listed, max_pixels, max_frames, frame_seconds, prepared)
    files = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.is_symlink())
    for path in files:
        relative = path.relative_to(raw_dir).as_posix()
        suffix = path.suffix.lower()
        if suffix == ".txt" or path.name == "dataset.json" or is_metadata_name(path.name):
            continue  # captions travel with their image; the source's metadata is rewritten below
        if suffix not in IMAGE_EXTENSIONS:
            prepared.skipped.append({"file": relative, "reason": "not an image file type"})
            continue
        try:
            inspect_image(path, max_pixels)
        except ImageRejected as exc:
            prepared.skipped.append({"file": relative, "reason": str(exc)})
            continue
        stem = _unique_stem(path.relative_to(raw_dir).with_suffix("").as_posix().replace("/", "_"), taken)
        training_copy(path, out_dir, stem)
        caption = path.with_suffix(".txt")
        if caption.is_file():
            shutil.copyfile(caption, out_dir / f"{stem}.txt")
            prepared.captions += 1
        elif (text := listed.get(caption_key(relative))) is not None:
            (out_dir / f"{stem}.txt").write_text(text, "utf-8")
            prepared.captions += 1
        prepared.images += 1
    source_meta = read_json(raw_dir / "dataset.json", {}) or {}
    trigger = source_meta.get("trigger_word") if isinstance(source_meta, dict) else ""
    atomic_write_json(out_dir / "dataset.json", {
        "name": name, "trigger_word": trigger if isinstance(trigger, str) else "", "images": prepared.images,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source_dataset_id": None})
    return prepared


def _frames_of_videos(raw_dir: Path, listed: dict, max_pixels: int, max_frames: int, frame_seconds: float,
                      prepared: PreparedDataset) -> None:
    """Each video of `raw_dir` replaced by its sharpest frames beside it (app.video_frames, as the dataset manager
    takes them), each with the video's caption (its .txt, or its metadata row); a Live Photo's moving part (a
    video named like a photo of its folder) and a video that cannot be read are skipped with the reason."""
    from app.caption_files import caption_key
    from app.video_frames import LIVE_PHOTO_MOTION, Unreadable, extract_frames, is_video_name

    files = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.is_symlink())
    photos = {caption_key(p.relative_to(raw_dir).as_posix()) for p in files if p.suffix.lower() in IMAGE_EXTENSIONS}
    for path in (p for p in files if is_video_name(p.name)):
        relative = path.relative_to(raw_dir).as_posix()
        key = caption_key(relative)
        try:
            if key in photos:
                prepared.skipped.append({"file": relative, "reason": LIVE_PHOTO_MOTION})
                continue
            staging = path.with_name(f".{path.name}-frames")
            try:
                frames = extract_frames(path, staging, quiet(), relative, path.stem, max_frames, max_pixels,
                                        every=frame_seconds)
            except Unreadable as exc:
                prepared.skipped.append({"file": relative, "reason": exc.reason})
                continue
            caption_file = path.with_suffix(".txt")
            caption = caption_file.read_text("utf-8") if caption_file.is_file() else listed.get(key)
            for frame in frames.frames:
                target = path.with_name(frame.name)
                if target.exists():  # a file of the dataset has that name already: it stays
                    continue
                frame.path.replace(target)
                if caption is not None:
                    target.with_suffix(".txt").write_text(caption, "utf-8")
            shutil.rmtree(staging, ignore_errors=True)
        finally:
            path.unlink(missing_ok=True)


def _unique_stem(stem: str, taken: set[str]) -> str:
    candidate, n = stem, 2
    while candidate.lower() in taken:
        candidate, n = f"{stem}_{n}", n + 1
    taken.add(candidate.lower())
    return candidate
