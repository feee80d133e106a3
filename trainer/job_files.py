"""Serving a job's files (a training job's or a render's): images inline or as their small previews, text inline,
LoRA files as downloads named after the job; the README.txt and ComfyUI workflow beside a job's LoRA name the file
as the library holds it."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from flask import request, send_file

from studio.thumbnails import PREVIEW_SIZE, UnreadableImage, cached_thumbnail
from studio.web import ApiError
from studio.workspace import confined
from trainer.library import IMAGE_SUFFIXES, PROOF_FILES, final_lora

THUMBS_DIR = ".thumbs"  # in a job folder: previews of its images (send_job_file)


def send_job_file(job, job_dir: Path, name: str):
    """One file of a job's folder (a request's path, confined to the folder): images and text inline,
    LoRA files as downloads named after the job. `?thumb=1` on an image answers with its small preview
    (made once, kept in the job's .thumbs folder), for pages that show many at once."""
    path = confined(job_dir, *name.split("/"))
    if not path.is_file():
        raise ApiError(f"The job has no file {name!r}.", 404)
    image = path.suffix.lower() in IMAGE_SUFFIXES
    if image and request.args.get("thumb") == "1":
        try:
            path = cached_thumbnail(path, confined(job_dir, THUMBS_DIR, *name.split("/")).with_suffix(".webp"),
                                    PREVIEW_SIZE)
        except UnreadableImage:
            raise ApiError(f"{name!r} cannot be read as an image.", 422) from None
    inline = image or path.suffix in {".txt", ".json", ".jsonl"}
    download_name = path.name
    if path.name == "lora.safetensors":  # a checkpoint: name it after the job and step
        download_name = f"{job.config.get('name', job.id)}-{path.parent.name}.safetensors"
    elif path.parent == job_dir / "lora" and path.suffix == ".safetensors":  # the LoRA: as the library names it,
        download_name = (job.result or {}).get("library_file") or path.name  # which its README and workflow load
    placed = named_as_placed(job, job_dir, path)
    response = send_file(io.BytesIO(placed) if placed is not None else os.fspath(path), as_attachment=not inline,
                         download_name=download_name, conditional=True, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


def named_as_placed(job, job_dir: Path, path: Path) -> bytes | None:
    """The README.txt or ComfyUI workflow beside a job's LoRA, naming the file as the library holds it when that is
    another name than the job wrote (taken by another job's LoRA or one of ComfyUI's own, or renamed since), so the
    workflow loads this job's LoRA in ComfyUI; None when the file on disk says it right already."""
    readme, graph = PROOF_FILES["readme"], PROOF_FILES["workflow"]
    if path.parent != job_dir / "lora" or path.name not in (readme, graph):
        return None
    placed, lora = (job.result or {}).get("library_file"), final_lora(job, job_dir)
    if not isinstance(placed, str) or lora is None or placed == lora.name:
        return None
    text = path.read_text("utf-8", errors="replace")
    if path.name == readme:
        return text.replace(lora.name, placed).encode()
    try:
        nodes = json.loads(text)
    except ValueError:
        return None
    for node in nodes.values() if isinstance(nodes, dict) else ():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and inputs.get("lora_name") == lora.name:
            inputs["lora_name"] = placed
    return (json.dumps(nodes, indent=1, ensure_ascii=False) + "\n").encode()
