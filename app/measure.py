"""Images recorded before the studio measured sharpness are measured once, in the background after a start,
so an older workspace gets its soft flags too. Each record changes only if its file is still the one
measured (same SHA-256); a file that cannot be read is marked as measured (no score), not retried."""

from __future__ import annotations

import logging
import threading

from app import imaging
from app.store import Dataset, DatasetStore, NotFound, refresh_flags

log = logging.getLogger(__name__)
SAVE_EVERY = 20


def measure_missing(store: DatasetStore, max_pixels: int) -> int:
    """Measures every recorded image without a sharpness score; returns how many were measured."""
    measured = 0
    for dataset in store.all():
        try:
            names = [n for n, r in dataset.meta()["images"].items() if "sharpness" not in r]
            for start in range(0, len(names), SAVE_EVERY):
                measured += _measure(dataset, names[start:start + SAVE_EVERY], max_pixels)
        except NotFound:  # deleted meanwhile
            continue
    if measured:
        log.info("measured the sharpness of %d image(s) recorded before it was measured", measured)
    return measured


def _measure(dataset: Dataset, names: list[str], max_pixels: int) -> int:
    scores = {}
    for name in names:
        try:
            info = imaging.inspect_image(dataset.image_path(name), max_pixels)
            scores[name] = (info.sha256, info.sharpness)
        except (imaging.ImageRejected, OSError, ValueError):
            scores[name] = (None, None)
    with dataset.lock():
        meta = dataset.meta()
        for name, (sha, score) in scores.items():
            record = meta["images"].get(name)
            if record is not None and "sharpness" not in record and (sha is None or record.get("sha256") == sha):
                record["sharpness"] = score
        refresh_flags(meta)
        dataset.save_meta(meta)
    return len(scores)


def start(store: DatasetStore, max_pixels: int) -> threading.Thread:
    thread = threading.Thread(target=_run, args=(store, max_pixels), name="measure-images", daemon=True)
    thread.start()
    return thread


def _run(store: DatasetStore, max_pixels: int) -> None:
    try:
        measure_missing(store, max_pixels)
    except Exception:  # a background nicety: never take the service down
        log.exception("measuring older images failed")
