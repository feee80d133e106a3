"""What dataset.json keeps of the images an import places: each image's record, written in batches while the import
runs, and the images an interrupted import had moved into the folder without recording them."""

from __future__ import annotations

import logging

from app import imaging
from app.store import Dataset, refresh_flags
from studio.settings import Settings

log = logging.getLogger(__name__)
FLUSH_EVERY = 50  # records written at least every this many images (and every two seconds)


def image_record(info: imaging.ImageInfo, added_at: float) -> dict:
    """What dataset.json keeps of one image."""
    return {"width": info.width, "height": info.height, "bytes": info.bytes, "sha256": info.sha256,
            "dhash": info.dhash, "sharpness": info.sharpness, "added_at": added_at}


def flush(dataset: Dataset, pending: dict[str, dict], final: bool = False) -> None:
    """Records the `pending` images in dataset.json (and empties it)."""
    if not pending and not final:
        return
    with dataset.lock():
        meta = dataset.meta()
        meta["images"].update(pending)
        refresh_flags(meta)
        dataset.save_meta(meta)
    pending.clear()


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
