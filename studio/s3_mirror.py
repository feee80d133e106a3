"""Pushing a folder to a prefix again mirrors it, as publishing to the hub does: what an earlier push put there and
the folder no longer holds (an image taken out of the dataset) is removed, so the prefix imports back (or trains,
serverless) as the export is now. Only what the studio itself pushed is ever removed: each push leaves a record of
its keys, `<prefix>.studio-push.json` (a hidden name, which imports skip), and a prefix shared with other files keeps
them."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from studio.s3 import ProgressCallback, Storage, StorageError, normalize_prefix

log = logging.getLogger(__name__)
RECORD = ".studio-push.json"


def _earlier_keys(storage: Storage, key: str) -> list[str]:
    """The keys the last push to this prefix wrote; [] when there was none (or its record cannot be read)."""
    try:
        body = storage.read_bytes(key, 16 << 20)
    except StorageError as exc:  # none: the first push; one that cannot be read only means nothing is removed
        if exc.code != "not_found":
            log.warning("the record of the last push, %s, could not be read: %s", key, exc.message)
        return []
    try:
        keys = json.loads(body).get("keys")
    except (ValueError, AttributeError):
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def mirror_folder(storage: Storage, folder: Path, prefix: str,
                  on_progress: ProgressCallback | None = None) -> dict:
    """Upload `folder` to `prefix`, then remove the keys of the earlier push that it no longer holds.
    {"keys": uploaded, "removed": keys removed, "others": how many other objects the prefix holds (left as they
    were)}."""
    prefix = normalize_prefix(prefix)
    record = prefix + RECORD
    earlier = _earlier_keys(storage, record)
    keys = storage.upload_folder(folder, prefix, on_progress)
    kept = set(keys)
    removed = sorted({k for k in earlier if k.startswith(prefix) and k != record and k not in kept})
    for key in removed:
        storage.delete(key, ", which the export no longer holds")
    body = json.dumps({"keys": keys, "pushed_at": time.time()}).encode()
    storage.put_bytes(record, body, "application/json")
    others = sum(1 for obj in storage.list_objects(prefix) if obj.key not in kept and obj.key != record)
    return {"keys": keys, "removed": removed, "others": others}
