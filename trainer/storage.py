"""Where the volume's space went: models, datasets, exports, training jobs, the LoRA library, what was
deleted recently, caches. Pod volumes are small and a full disk stops a job, so the dashboard shows this
with the place to free each part. A file with several names (the library hard-links a job's LoRA) is
counted once, in the first part that reaches it.

    GET /api/storage   {root, total, free, parts: [{key, label, bytes, hint}]}
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from flask import Blueprint, current_app, jsonify

from studio.workspace import Workspace

bp = Blueprint("storage", __name__)
FRESH_S = 30.0  # walking a workspace of many thousands of files takes a moment: reuse it for a while
_cache: dict[str, tuple[float, dict]] = {}
_lock = threading.Lock()


def _parts(workspace: Workspace) -> list[tuple[str, str, list[Path], str]]:
    """(key, label, folders, where to free it), in counting order: trash before what holds it."""
    trash = [workspace.datasets / ".trash", *sorted(workspace.datasets.glob("*/.trash"))]
    return [
        ("models", "Models", [workspace.models], "downloaded per models.txt; needed to train"),
        ("jobs", "Training jobs", [workspace.jobs],
         "checkpoints and previews: delete jobs you are done with (their LoRAs stay)"),
        ("loras", "LoRA library", [workspace.loras], "files not also in a job: delete them in the LoRA library"),
        ("deleted", "Recently deleted", trash, "kept 7 days: empty it on the Datasets page or a dataset's page"),
        ("datasets", "Datasets", [workspace.datasets], "your images and captions"),
        ("exports", "Exports", [workspace.exports], "versions no job needs can go: the export dialog lists them"),
        ("cache", "Caches", [workspace.cache, workspace.root / ".cache"], "latents, text embeddings, downloads"),
    ]


def _walk(folder: Path, seen: set[tuple[int, int]]) -> int:
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        stat = entry.stat(follow_symlinks=False)
                        if (stat.st_dev, stat.st_ino) not in seen:
                            seen.add((stat.st_dev, stat.st_ino))
                            total += stat.st_size
        except OSError:
            continue  # gone or unreadable: count what can be read
    return total


def measure(workspace: Workspace) -> dict:
    seen: set[tuple[int, int]] = set()
    parts = [{"key": key, "label": label, "bytes": sum(_walk(f, seen) for f in folders), "hint": hint}
             for key, label, folders, hint in _parts(workspace)]
    usage = shutil.disk_usage(workspace.root)
    return {"root": str(workspace.root), "total": usage.total, "free": usage.free, "parts": parts,
            "measured_at": time.time()}


def cached_measure(workspace: Workspace, now: float | None = None) -> dict:
    now = time.monotonic() if now is None else now
    key = str(workspace.root)
    with _lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < FRESH_S:
            return hit[1]
        found = measure(workspace)
        _cache[key] = (now, found)
        return found


@bp.get("/api/storage")
def storage():
    return jsonify(cached_measure(current_app.config["STUDIO_WORKSPACE"]))
