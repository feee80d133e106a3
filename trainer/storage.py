"""Where the volume's space went: models, datasets, exports, training jobs, the LoRA library, what was
deleted recently, caches. Pod volumes are small and a full disk stops a job, so the dashboard shows this
with the place to free each part. A file with several names (the library hard-links a job's LoRA) is
counted once, in the first part that reaches it.

    GET /api/storage   {root, total, free, parts: [{key, label, bytes, hint}], freeable: {bytes, checkpoints}}
    POST /api/storage/free-states   frees what `freeable` counts

`freeable`: the training state (optimizer, RNG) of every checkpoint but the last of jobs that are not
running. Nothing uses it (resuming and Train more steps go on from the last checkpoint); a job frees
its own when it finishes, so this is what older jobs, stopped and failed ones still hold.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, current_app, jsonify

from studio.jobs import FINISHED
from studio.workspace import Workspace
from trainer.step_dirs import earlier_states, free_training_states

bp = Blueprint("storage", __name__)
FRESH_S = 30.0  # walking a workspace of many thousands of files takes a moment: reuse it for a while
_cache: dict[str, tuple[float, dict]] = {}
_lock = threading.Lock()


def _parts(workspace: Workspace) -> list[tuple[str, str, list[Path], str]]:
    """(key, label, folders, where to free it), in counting order: trash before what holds it."""
    trash = [workspace.datasets / ".trash", *sorted(workspace.datasets.glob("*/.trash")), workspace.trainer / ".trash"]
    return [
        ("models", "Models", [workspace.models], "downloaded per models.txt; needed to train"),
        ("jobs", "Training jobs", [workspace.jobs],
         "checkpoints and previews: delete jobs you are done with (their LoRAs stay), then empty Recently deleted"),
        ("loras", "LoRA library", [workspace.loras], "files not also in a job: delete them in the LoRA library"),
        ("deleted", "Recently deleted", trash,
         "kept 7 days: empty it on the LoRA library page, the Datasets page or a dataset's page"),
        ("datasets", "Datasets", [workspace.datasets], "your images and captions"),
        ("exports", "Exports", [workspace.exports], "versions no job needs can go: the export dialog lists them"),
        ("cache", "Caches", [workspace.cache, workspace.root / ".cache"], "latents, text embeddings, downloads"),
    ]


def folder_bytes(folder: Path, seen: set[tuple[int, int]] | None = None, skip: frozenset[str] = frozenset()) -> int:
    """The bytes of the files under `folder`, each file counted once however many names it has (and not at all when
    `seen` holds it already, or its name is in `skip`)."""
    seen = set() if seen is None else seen
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False) and entry.name not in skip:
                        stat = entry.stat(follow_symlinks=False)
                        if (stat.st_dev, stat.st_ino) not in seen:
                            seen.add((stat.st_dev, stat.st_ino))
                            total += stat.st_size
        except OSError:
            continue  # gone or unreadable: count what can be read
    return total


def _idle_job_dirs(workspace: Workspace) -> list[Path]:
    """The folders of training jobs that are not queued or running."""
    from trainer.jobs_api import store

    return [workspace.jobs / job.id for job in store().list(FINISHED, kind="train", limit=100_000)]


def freeable(job_dirs: list[Path]) -> dict:
    states = [state for folder in job_dirs for state in earlier_states(folder)]
    total = 0
    for state in states:
        with contextlib.suppress(OSError):
            total += state.stat().st_size
    return {"bytes": total, "checkpoints": len(states)}


def measure(workspace: Workspace, job_dirs: Callable[[], list[Path]] | None = None) -> dict:
    """`job_dirs`: the folders whose spare training state counts as freeable (asked for only here)."""
    seen: set[tuple[int, int]] = set()
    parts = [{"key": key, "label": label, "bytes": sum(folder_bytes(f, seen) for f in folders), "hint": hint}
             for key, label, folders, hint in _parts(workspace)]
    usage = shutil.disk_usage(workspace.root)
    return {"root": str(workspace.root), "total": usage.total, "free": usage.free, "parts": parts,
            "freeable": freeable(job_dirs() if job_dirs else []), "measured_at": time.time()}


def cached_measure(workspace: Workspace, now: float | None = None,
                   job_dirs: Callable[[], list[Path]] | None = None) -> dict:
    now = time.monotonic() if now is None else now
    key = str(workspace.root)
    with _lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < FRESH_S:
            return hit[1]
        found = measure(workspace, job_dirs)
        _cache[key] = (now, found)
        return found


@bp.get("/api/storage")
def storage():
    workspace = current_app.config["STUDIO_WORKSPACE"]
    return jsonify(cached_measure(workspace, job_dirs=lambda: _idle_job_dirs(workspace)))  # a cache hit asks no one


@bp.post("/api/storage/free-states")
def free_states():
    workspace = current_app.config["STUDIO_WORKSPACE"]
    count = freed = 0
    for folder in _idle_job_dirs(workspace):
        thinned, size = free_training_states(folder)
        count, freed = count + thinned, freed + size
    with _lock:
        _cache.pop(str(workspace.root), None)  # the next look measures again
    return jsonify({"checkpoints": count, "freed": freed})
