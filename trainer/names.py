"""LoRA names the form suggests: derived from the dataset, never one that is already taken.

A name is taken when a training job (any status: a queued or failed job may still finish) uses it, or
a file of that name is in the LoRA library (or ComfyUI's loras folder). Names compare without case,
as ComfyUI lists them and as a case-insensitive disk would store them. The library would keep a clashing
LoRA under `<name>-<job id>.safetensors` (see trainer.library); suggesting `my-cat-2` avoids that.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from studio.jobs import JobStore
from studio.web import ApiError
from studio.workspace import Workspace

bp = Blueprint("names", __name__)
NAME_MAX = 80  # the recipe's LoRA name pattern: 1-80 letters, digits, '-', '_' or '.'
FALLBACK = "lora"
JOBS_SCANNED = 5000


def slug(text: str) -> str:
    """A valid LoRA name from any text ("My cat!" -> "My-cat"), or "lora" when nothing is left."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)
    return name[:NAME_MAX].rstrip("-._") or FALLBACK


def taken_names(workspace: Workspace, store: JobStore) -> set[str]:
    """Lower-cased names in use by training jobs and by LoRA files in the library folders."""
    taken = {str(job.config.get("name")).lower() for job in store.list(kind="train", limit=JOBS_SCANNED)
             if job.config.get("name")}
    for folder in (workspace.loras, workspace.comfyui_loras):
        if folder is not None and folder.is_dir():
            taken.update(path.stem.lower() for path in Path(folder).glob("*.safetensors"))
    return taken


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, else `base-2`, `base-3`, ... (cut so the suffix still fits the 80-character limit)."""
    base = slug(base)
    if base.lower() not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = base[:NAME_MAX - len(suffix)].rstrip("-._") + suffix
        if candidate.lower() not in taken:
            return candidate
        number += 1


@bp.get("/api/lora-names")
def suggest():
    """`?for=<dataset or any text>`: {"suggested": a free name derived from it, "taken": [names in use]}."""
    wanted = request.args.get("for", "")
    if len(wanted) > 200:
        raise ApiError("'for' must be at most 200 characters.", 400)
    taken = taken_names(current_app.config["STUDIO_WORKSPACE"], current_app.extensions["job_store"])
    return jsonify({"suggested": unique_name(wanted or FALLBACK, taken), "taken": sorted(taken)})
