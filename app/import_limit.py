"""Take at most N images of an import: the first ones, by file name (or by row inside a Parquet file), or, with
`spread`, N spread evenly over the whole of it (a dataset sorted by class or by date gives some of each).

A source with many files (a Hugging Face dataset, a bucket prefix) downloads the first images at once with their
captions and every metadata file; the images after them and every ZIP and Parquet file are downloaded one by one,
only while the import still wants images (importer.run_import reads its sources in order), and the `.txt` files of
images left out are not downloaded at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app import imaging
from app.caption_files import caption_key, is_metadata_name
from app.video_frames import VIDEO_EXTENSIONS
from studio.jobs import JobError
from studio.text import plural
from studio.web import ApiError, json_flag

ARCHIVES = (".zip", ".parquet", *sorted(VIDEO_EXTENSIONS))  # files that hold images (a video: its frames)
MAX_LIMIT = 1_000_000


def spread_indices(total: int, count: int) -> list[int]:
    """`count` of `total` positions spread evenly over them (the middle of each of `count` equal stretches); all of
    them when `count` is not smaller."""
    if count >= total:
        return list(range(total))
    return [int((i + 0.5) * total / count) for i in range(count)]


class Shares:
    """A spread limit's parts for `parts` sources read in order (ZIPs, Parquet files, videos): the k-th may give
    what keeps the running total at round((k + 1) * total / parts), so each gives about as many (fewer images
    than sources: some of them, spread over the list, give one each) and what one lacks the next may give."""

    def __init__(self, total: int, parts: int):
        self.total, self.parts, self.index, self.given = total, max(parts, 1), 0, 0

    def next(self) -> int:
        """The next source's part (0: it is left out, not even downloaded)."""
        target = int((self.index + 1) * self.total / self.parts + 0.5)
        self.index += 1
        return max(0, target - self.given)

    def gave(self, count: int) -> None:
        self.given += count


def check_spread(body: dict, limit: int | None) -> bool:
    """Whether a request asks for its `limit` of images spread over the whole source (`spread`); ApiError with a
    sentence for anything but true or false, or for true without a limit."""
    spread = json_flag(body, "spread")
    if spread and limit is None:
        raise ApiError("'spread' spreads a limit of images over the source: give 'limit' with it.", 422)
    return spread


def check_limit(value) -> int | None:
    """The number of images a request asks to take at most (None: all of them); ApiError with a sentence
    otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ApiError(f"'limit' must be a whole number of images from 1 to {MAX_LIMIT:,}, or empty for all.", 422)
    return value


@dataclass
class Left:
    """What an import with a limit of images left out: whole files (not downloaded, not read) and the images or
    rows inside a ZIP or a Parquet file it stopped reading."""

    limit: int | None
    spread: bool = False  # the limit spread over each source (spread_indices) instead of its first images
    files: int = 0
    entries: int = 0

    def room(self, taken: int) -> int | None:
        """How many more images may be taken; None without a limit."""
        return None if self.limit is None else max(0, self.limit - taken)

    def note(self) -> str:
        if not (self.files or self.entries):
            return ""
        parts = [plural(n, what) for n, what in ((self.files, "more file"), (self.entries, "more image"))
                 if n]
        if self.spread:
            return f"; took {plural(self.limit, 'image')} spread over the source ({' and '.join(parts)} left out)"
        return f"; stopped at the limit of {plural(self.limit, 'image')} ({' and '.join(parts)} left out)"

    def public(self) -> dict:
        return {"images": self.limit, "spread": self.spread, "reached": bool(self.files or self.entries),
                "files_left": self.files, "images_left": self.entries}


class Budget:
    """The bytes a download with a limit may still take (MAX_UPLOAD_MB less what came at once): each file it
    fetches later is counted before it is fetched."""

    def __init__(self, max_bytes: int, spent: int, spread: bool = False):
        self.max_bytes, self.spent, self.spread = max_bytes, spent, spread

    def take(self, what: str, size: int) -> None:
        """Counts `size` bytes for `what`; JobError when they would pass the limit."""
        if self.spent + size > self.max_bytes:
            # spread over the source: every ZIP and Parquet file gives its part, however few images are taken
            instead = "take the first images instead of spreading them" if self.spread else "take fewer images"
            raise JobError(f"{what} ({size / 2**20:,.0f} MB) would take the download past the limit of "
                           f"{self.max_bytes / 2**20:,.0f} MB (MAX_UPLOAD_MB): {instead}, or raise MAX_UPLOAD_MB.")
        self.spent += size


def holds_images(name: str) -> bool:
    """Whether a source of this name gives images (an image, a ZIP, a Parquet file, a video): one a reached limit
    skips."""
    return name.lower().endswith(ARCHIVES) or imaging.is_image_name(name)


def split(items: list, limit: int | None, path: Callable[[object], str], spread: bool = False) -> tuple[list, list]:
    """(the items to download at once, those to download only while the import wants more images) of `items`
    (images, captions, metadata files, ZIPs and Parquet files, sorted by `path`); all at once without a limit.
    With `spread`, the images taken at once are spread over all of them instead of the first ones."""
    if limit is None:
        return items, []
    images = [item for item in items if imaging.is_image_name(path(item))]
    chosen = spread_indices(len(images), limit) if spread else range(min(limit, len(images)))
    taken = {path(images[i]) for i in chosen}
    keys = {caption_key(name) for name in taken}
    first = [item for item in items if path(item) in taken or is_metadata_name(path(item))
             or (path(item).lower().endswith(".txt") and caption_key(path(item)) in keys)]
    rest = [item for item in images if path(item) not in taken]
    return first, rest + [item for item in items if path(item).lower().endswith(ARCHIVES)]
