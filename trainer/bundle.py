"""Everything a job made, in one ZIP, so nothing is lost when the pod goes: the LoRA with its README,
proof and ComfyUI workflow, every checkpoint's LoRA under a name that says its step, every preview and each
preview prompt's timelapse (made as the archive is written where nobody looked at it yet), the Try-the-LoRA
renders with their prompts, and the run's config, metrics and log.

    GET /api/jobs/<id>/download.zip   the archive, streamed as it is written
    GET /api/jobs/<id>/bundle         what it holds: {"files", "size"} (the page labels its link)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from flask import Blueprint, jsonify

from studio.jobs import Job
from studio.workspace import Workspace
from studio.zip_stream import Entry, zip_response
from trainer import library, renders, timelapse
from trainer.jobs_api import load_job, store, workspace

bp = Blueprint("bundle", __name__)


def _files(folder: Path, leave_out: str = "") -> list[Path]:
    """Files under `folder`, in order, without hidden ones (half-written files and small previews) and without
    its subfolder `leave_out`."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*") if path.is_file()
                  and not any(part.startswith(".") for part in path.relative_to(folder).parts)
                  and path.relative_to(folder).parts[0] != leave_out)


def _render_name(render: Job, image: dict) -> str:
    """A render's picture named for what it shows: "0_base.png", "1_tiny-lora_x0.5.png" (its number first, so the
    names sort as the card shows them; renders.json has the rest)."""
    file = image["file"]
    stem, suffix = Path(file).stem, Path(file).suffix
    loras = render.config.get("loras") or []
    index, strength = image.get("lora"), image.get("strength")
    if index is None or not strength or not isinstance(index, int) or not 0 <= index < len(loras):
        return f"{stem}_base{suffix}"
    label = safe_label(str(loras[index].get("label") or "lora"))
    return f"{stem}_{label}_x{strength:g}{suffix}"


def safe_label(text: str) -> str:
    """`text` as a part of a file name: letters, digits, dots, dashes and underscores."""
    return re.sub(r"[^\w.-]+", "-", text).strip("-.")[:60] or "lora"


def entries(space: Workspace, job: Job) -> list[Entry]:
    job_dir = space.jobs / job.id
    top = job.config.get("name") or job.id
    out: list[Entry] = [(f"{top}/{path.name}", path) for path in _files(job_dir / "lora")]
    out += [(f"{top}/checkpoints/{library.checkpoint_name(job, entry['step'])}", job_dir / entry["file"])
            for entry in library.checkpoints(job_dir)]
    out += [(f"{top}/previews/{path.relative_to(job_dir / 'samples').as_posix()}", path)
            for path in _files(job_dir / "samples", leave_out=timelapse.FOLDER)]  # those come last, all of them
    made = store().list(("completed",), parent_id=job.id, kind=renders.KIND, limit=200)
    for render in made:
        folder = job_dir / "renders" / render.id
        images = [image for image in (render.result or {}).get("images") or [] if isinstance(image, dict)]
        out += [(f"{top}/renders/{render.id}/{_render_name(render, image)}", folder / image["file"])
                for image in images if isinstance(image.get("file"), str) and image["file"]
                and Path(image["file"]).name == image["file"]]
    if made:
        listing = [{key: value for key, value in renders.public(render).items() if key != "images"}
                   | {"images": (render.result or {}).get("images") or []} for render in made]
        out.append((f"{top}/renders/renders.json", json.dumps(listing, indent=1).encode()))
    data = {"datasets": job.datasets} if job.datasets else {"dataset": job.dataset,
                                                           "dataset_version": job.dataset_version}
    out.append((f"{top}/config.json", json.dumps({"name": job.name, "recipe": job.recipe, **data, "config": job.config},
                                                 indent=1).encode()))
    out += [(f"{top}/{name}", job_dir / name) for name in ("metrics.jsonl", "eval.jsonl", "log.txt")
            if (job_dir / name).is_file()]
    return out


def size_of(items: list[Entry]) -> int:
    total = 0
    for _, content in items:
        try:
            total += len(content) if isinstance(content, bytes) else content.stat().st_size
        except OSError:
            continue
    return total


def _timelapses(job_dir: Path, top: str) -> Iterator[Entry]:
    """Every preview prompt's timelapse, made now where it is not there yet (while the archive streams)."""
    for index, path in timelapse.every(job_dir):
        yield f"{top}/previews/timelapse/prompt-{index + 1}.webp", path


@bp.get("/api/jobs/<job_id>/bundle")
def bundle_info(job_id):
    """The archive's files and size; a timelapse nobody made yet counts as a file, its size unknown till then."""
    job = load_job(job_id)
    job_dir = workspace().jobs / job.id
    items = entries(workspace(), job)
    made = _files(job_dir / "samples" / timelapse.FOLDER)
    prompts = timelapse.prompts_with_timelapse(library.samples(job_dir))
    return jsonify({"files": len(items) + len(prompts), "size": size_of(items) + size_of([("", p) for p in made])})


@bp.get("/api/jobs/<job_id>/download.zip")
def bundle_download(job_id):
    job = load_job(job_id)
    top = job.config.get("name") or job.id
    return zip_response(f"{top}.zip", chain(entries(workspace(), job), _timelapses(workspace().jobs / job.id, top)))
