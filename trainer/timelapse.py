"""Watch a LoRA learn: one preview prompt's pictures, the base model's first, then the LoRA's at every preview step,
as an animated WebP with the step under each frame (GET /api/jobs/<id>/timelapse/<prompt>).

Made from the job's own previews when first asked for and kept beside them (samples/timelapse/<prompt>-<last
step>.webp); a new preview step makes a new one. "Download all" carries every prompt's, made then where nobody
looked at it yet (`every`). Torch-free.

A long run can have thousands of preview steps, and the animation is made while a request (the page, a publish, a
job bundle) waits and holds every frame decoded at once: so it shows at most MAX_FRAMES pictures, the base model's,
the last step's and evenly picked steps between (each frame says its step). A shorter run shows every step.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint
from PIL import Image, ImageDraw, ImageFont

from studio.atomic import atomic_write_bytes
from studio.web import ApiError
from trainer import job_files, library

bp = Blueprint("timelapse", __name__)

FOLDER = "timelapse"
SIDE = 512  # the frames' longer side at most
BAR = 26  # the caption bar under each frame
FRAME_MS = 700
LAST_MS = 2000  # the last step stays a while before it starts again
MAX_FRAMES = 48  # ~0.8 MB each decoded at 512 px: at most ~40 MB and a few seconds of encoding per animation


def frames(job_dir: Path, index: int, groups: list[dict] | None = None) -> list[tuple[str, Path]]:
    """(label, picture) of prompt `index`: the base model's, then each preview step's LoRA picture, oldest first.
    `groups`: the job's `library.samples` when the caller has them already (read once for every prompt)."""
    out = []
    for group in library.samples(job_dir) if groups is None else groups:
        pair = next((p for p in group["pairs"] if p["index"] == index), None)
        path = pair and (pair["base"] if group.get("base_only") else pair["lora"])
        if path and (job_dir / path).is_file():
            out.append(("base model" if group.get("base_only") else f"step {group['step']}", job_dir / path))
    return out


def prompts_with_timelapse(groups: list[dict]) -> list[int]:
    """Prompt indexes of `samples` groups that have two or more pictures to show in turn."""
    counts: dict[int, int] = {}
    for group in groups:
        for pair in group["pairs"]:
            if pair["base"] if group.get("base_only") else pair["lora"]:
                counts[pair["index"]] = counts.get(pair["index"], 0) + 1
    return sorted(index for index, count in counts.items() if count >= 2)


def evenly(shown: list, budget: int = MAX_FRAMES) -> list:
    """At most `budget` of `shown`, the first and the last always, the others evenly spaced between; all of them
    when they fit."""
    if len(shown) <= budget:
        return list(shown)
    if budget < 2:
        return list(shown[-budget:]) if budget > 0 else []
    last = len(shown) - 1
    return [shown[round(i * last / (budget - 1))] for i in range(budget)]


def timelapse(job_dir: Path, index: int, groups: list[dict] | None = None) -> Path:
    """The animation of prompt `index` (made now unless it is there for the latest step); ApiError 404 with
    fewer than two pictures. `groups`: as for `frames`."""
    shown = frames(job_dir, index, groups)
    if len(shown) < 2:
        raise ApiError(f"Prompt {index + 1} has no previews to show in turn yet: a timelapse needs the base model's "
                       "picture and a preview step, or two preview steps.", 404)
    folder = job_dir / "samples" / FOLDER
    path = folder / f"{index}-{shown[-1][0].replace(' ', '_')}-{len(shown)}.webp"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            data = encode(shown)
        except OSError as exc:  # a preview that is not a picture (cut short, or not written by the trainer)
            raise ApiError(f"The previews of prompt {index + 1} cannot be read as pictures ({exc}).", 422) from None
        atomic_write_bytes(path, data)
        for old in folder.glob(f"{index}-*.webp"):
            if old != path:
                old.unlink(missing_ok=True)
    return path


def every(job_dir: Path) -> Iterator[tuple[int, Path]]:
    """(prompt index, animation) of every prompt with pictures to show in turn, each made now unless it is there
    for the latest step; a prompt whose previews cannot be read is left out."""
    groups = library.samples(job_dir)  # once: a long run has thousands of preview steps to list
    for index in prompts_with_timelapse(groups):
        try:
            yield index, timelapse(job_dir, index, groups)
        except ApiError:
            continue


def encode(shown: list[tuple[str, Path]]) -> bytes:
    """Animated WebP: the pictures (at most MAX_FRAMES of them, `evenly`) at the first one's size, each with its
    label in a bar under it. Every frame is held decoded at once, hence the budget."""
    shown = evenly(shown)
    with Image.open(shown[0][1]) as first:
        scale = min(1.0, SIDE / max(first.size))
        size = (max(1, round(first.width * scale)), max(1, round(first.height * scale)))
    font = _font()
    pictures = []
    for label, path in shown:
        with Image.open(path) as picture:
            frame = Image.new("RGB", (size[0], size[1] + BAR), (18, 20, 26))
            frame.paste(picture.convert("RGB").resize(size, Image.Resampling.LANCZOS), (0, 0))
        ImageDraw.Draw(frame).text((8, size[1] + BAR // 2), label, fill=(235, 235, 235), font=font, anchor="lm")
        pictures.append(frame)
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="WEBP", save_all=True, append_images=pictures[1:], quality=85, loop=0,
                     duration=[FRAME_MS] * (len(pictures) - 1) + [LAST_MS])
    return buffer.getvalue()


def _font():
    try:
        return ImageFont.load_default(size=15)
    except TypeError:  # an older Pillow without a scalable default font
        return ImageFont.load_default()


@bp.get("/api/jobs/<job_id>/timelapse/<int:index>")
def job_timelapse(job_id, index):
    from trainer.jobs_api import load_job, workspace

    job = load_job(job_id)
    job_dir = workspace().jobs / job.id
    path = timelapse(job_dir, index)
    return job_files.send_job_file(job, job_dir, path.relative_to(job_dir).as_posix())
