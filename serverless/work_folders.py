"""The worker's folder per job, under <root>/serverless/<job id>, and how long one outlives its job.

A job that ends well removes its folder. One that fails keeps it (its checkpoints), so RunPod's retry of the same
job (POST /retry/<job id>, allowed until the job expires: 30 minutes after a /run job ends) resumes from the last
checkpoint instead of step 0. Nothing else ever comes back for such a folder, so a worker that lives through many
failed jobs would fill its disk with checkpoints nobody will read: each job, when it starts, removes the folders
that no job has used for KEEP_S.

A folder in use says so: its job touches ACTIVE_FILE every BEAT_S while it runs, and a folder touched within
FRESH_S is never removed, whatever its age (several workers may share one network volume, each on its own job).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

ACTIVE_FILE = ".active"
BEAT_S = 60.0
FRESH_S = 10 * 60.0
KEEP_S = 2 * 3600.0  # the retry window (30 minutes) with room to spare


def last_used(folder: Path) -> float:
    """The newest modification time in `folder` (its own, its ACTIVE_FILE's, every file's in it)."""
    newest = 0.0
    for top, dirs, files in os.walk(folder):
        for name in (*dirs, *files, ""):
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(top, name)).st_mtime)
    return newest


def sweep(parent: Path, current: str, now: float | None = None) -> list[str]:
    """Remove the job folders under `parent` (but `current`'s) that no job has used for KEEP_S; return their
    names. Never raises: a folder that cannot be removed is logged and left."""
    now = time.time() if now is None else now
    removed = []
    try:
        folders = [path for path in parent.iterdir() if path.name != current and path.is_dir()
                   and not path.is_symlink()]
    except OSError:
        return removed  # no folder yet: the first job of this worker
    for folder in sorted(folders):
        with contextlib.suppress(OSError):
            if now - (folder / ACTIVE_FILE).stat().st_mtime < FRESH_S:
                continue  # a job (of this worker or another on the same volume) runs in it
        idle = now - last_used(folder)
        if idle < KEEP_S:
            continue
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            log.warning("could not remove the old job folder %s: %s", folder, exc)
            continue
        log.info("removed the folder of job %s, unused for %.1f hours (kept for a retry that never came)",
                 folder.name, idle / 3600)
        removed.append(folder.name)
    return removed


@contextlib.contextmanager
def held(folder: Path, beat_s: float = BEAT_S):
    """While the block runs, `folder` is marked in use (ACTIVE_FILE touched every `beat_s`)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ACTIVE_FILE
    with contextlib.suppress(OSError):  # a full disk fails the job where it writes, not here
        marker.touch()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(beat_s):
            with contextlib.suppress(OSError):  # a job that ends well removes its folder: nothing is made again
                os.utime(marker)

    thread = threading.Thread(target=beat, name="serverless-folder-beat", daemon=True)
    thread.start()
    try:
        yield folder
    finally:
        done.set()
        thread.join(5)
        with contextlib.suppress(OSError):  # a failed job's folder ages from now on
            marker.unlink()
