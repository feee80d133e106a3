"""The captions of many images of a dataset at once (a gallery page, the index, the words panel): one listing of the
folder, and a caption file read again only when its inode, size or times changed since (a write replaces the file),
so a listing of 3,000 images opens no 3,000 files."""

from __future__ import annotations

import os

from studio.workspace import safe_name

# a caption file's path -> (its stat, its text), up to MAX_CHARS of text in all; then it starts again
_cache: dict[str, tuple[tuple, str | None]] = {}
_chars = [0]
MAX_CHARS = 32 * 2**20  # ~100,000 captions of a few lines


def read_captions(dataset, names) -> dict[str, str | None]:
    """{name: dataset.read_caption(name)} for `names`, from the cache where the file is unchanged."""
    try:
        with os.scandir(dataset.inside(dataset.folder)) as entries:
            files = {entry.name: entry for entry in entries if entry.name.endswith(".txt")}
    except FileNotFoundError:  # the dataset was deleted meanwhile: no captions, as read_caption finds none
        files = {}
    captions = {}
    for name in names:
        entry = files.get(os.path.splitext(safe_name(name))[0] + ".txt")
        if entry is None or entry.is_symlink():  # a symlink is read (or refused) as read_caption does
            captions[name] = None if entry is None else dataset.read_caption(name)
            continue
        stat = entry.stat(follow_symlinks=False)
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        cached = _cache.get(entry.path)
        if cached is None or cached[0] != key:
            cached = (key, dataset.read_caption(name))
            if _chars[0] > MAX_CHARS:
                _cache.clear()
                _chars[0] = 0
            _cache[entry.path] = cached
            _chars[0] += len(cached[1] or "")
        captions[name] = cached[1]
    return captions
