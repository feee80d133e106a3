"""A full disk, said plainly: which volume, how much is free and what can go. Every web service answers
it with 507, and a dataset or training job fails with the same sentence instead of an errno. Writes are
atomic (studio.atomic), so a write the disk refused leaves the earlier file as it was."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from studio.model_status import format_bytes

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def free_bytes(root: Path) -> int | None:
    try:
        return shutil.disk_usage(root).free
    except OSError:
        return None


def disk_full_message(root: Path, what: str = "The change") -> str:
    free = free_bytes(root)
    where = f"{root} has {format_bytes(free)} free" if free is not None else f"{root} is full"
    return f"The disk is full ({where}). {what} was not saved and nothing earlier was changed: {FREE_SPACE}"


FREE_SPACE = ("free space (old training jobs and their checkpoints, export versions no job needs, datasets you are "
              "done with, then Recently deleted: a dataset's, the Datasets page's, the LoRA library page's) and try "
              "again.")
