"""Renders ("Try the LoRA"): one prompt, one seed, several LoRA strengths, rendered by the worker.

A render is a job of kind "render" in the shared job store, whose parent is the training job it tries.
Its settings are in its config; its images go to jobs/<training job>/renders/<render id>/<i>.png, so
they are served, listed and deleted with the training job. The worker runs renders before queued
training jobs (they take seconds), one job at a time on the one GPU.

A render of a file of the LoRA library (one added from a link, a smaller copy: no training job of this pod
made it) has no parent: its config names the file (`library_file`) and its images go to
trainer/tries/<render id>/; they are deleted with the file.
"""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

from studio.jobs import Job
from studio.web import ApiError
from studio.workspace import UnsafePathError, Workspace, confined
from trainer import job_files, library
from trainer.lora_file import LoraFileError, zimage_lora_rank
from trainer.preview_prompts import read as read_options

KIND = "render"
PAUSED = "paused_for_renders"  # in a training job's details: its stop queues it again behind the renders
DEFAULT_STRENGTHS = [0.0, 0.8, 1.0]
MAX_STRENGTHS = 6
MAX_STRENGTH = 2.0
MAX_PROMPT = 2000
MAX_WAITING = 12  # queued renders per training job
MAX_IMAGES = 24  # per render
SIZE_RANGE = (64, 2048)
TRIGGER = "[trigger]"
MAX_STACKED = 2  # library LoRAs a render applies to every image besides the one it tries ("with")
MAX_BESIDE = 3  # library LoRAs a render shows side by side with the one it tries ("beside")
LIBRARY_FILE = "library_file"  # in a render's config: the library file it tries (it has no parent job)
TRIES_DIR = "tries"  # under trainer/: the images of the library's renders
# a library file's renders: Z-Image-Turbo's own sampling (the recipe's preview defaults); in demo mode the tiny
# model's (as Express's demo previews)
LIBRARY_DEFAULTS = {"width": 1024, "height": 1024, "steps": 9, "guidance_scale": 0.0}
DEMO_DEFAULTS = {"width": 64, "height": 64, "steps": 2, "guidance_scale": 0.0}


class RenderInvalid(ValueError):
    """A render request that cannot run; the message says which field and why."""


def library_file_of(render: Job) -> str | None:
    """The library file a render tries; None for a render of a training job's LoRA."""
    name = render.config.get(LIBRARY_FILE)
    return name if isinstance(name, str) else None


def home(workspace: Workspace, render: Job) -> tuple[Path, tuple[str, ...]]:
    """The folder a render's files are served from (its training job's, or trainer/tries) and the render's
    folder in it."""
    if library_file_of(render):
        return workspace.trainer / TRIES_DIR, (render.id,)
    return confined(workspace.jobs, render.parent_id or "_"), ("renders", render.id)


def folder(workspace: Workspace, render: Job) -> Path:
    served, parts = home(workspace, render)
    return confined(served, *parts)


def remove_files(workspace: Workspace, render: Job) -> None:
    """A deleted render's images, log and the small previews made of them."""
    served, parts = home(workspace, render)
    shutil.rmtree(confined(served, *parts), ignore_errors=True)
    shutil.rmtree(confined(served, job_files.THUMBS_DIR, *parts), ignore_errors=True)


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RenderInvalid(f"'{name}' must be a number.")
    return float(value)


def _whole(body: dict, name: str, default: int, low: int, high: int, multiple: int = 1) -> int:
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):  # NaN and Infinity (Python's JSON reads them) are no whole numbers
        raise RenderInvalid(f"'{name}' must be a whole number.")
    value = int(value)
    if not low <= value <= high:
        raise RenderInvalid(f"'{name}' must be between {low} and {high}.")
    if value % multiple:
        raise RenderInvalid(f"'{name}' must be a multiple of {multiple} (e.g. {value - value % multiple or multiple}).")
    return value


def strengths_of(value) -> list[float]:
    if value is None:
        return list(DEFAULT_STRENGTHS)
    if not isinstance(value, list) or not value:
        raise RenderInvalid("'strengths' must be a list of one or more numbers (0 is the base model).")
    found = sorted({round(_number(v, "strengths"), 3) for v in value})
    if len(found) > MAX_STRENGTHS:
        raise RenderInvalid(f"At most {MAX_STRENGTHS} strengths per render.")
    if found[0] < -MAX_STRENGTH or found[-1] > MAX_STRENGTH:
        raise RenderInvalid(f"Strengths must be between -{MAX_STRENGTH:g} and {MAX_STRENGTH:g}.")
    return found


def lora_choices(job: Job, job_dir: Path) -> list[dict]:
    """The LoRA files a render can try, newest first: the final one (a completed job) and every other
    checkpoint's; "all" (every one of them side by side) when there are several."""
    every = _every_lora(job, job_dir)
    choices = [{"value": "final" if entry["final"] else entry["step"], "step": entry["step"],
                "label": entry["label"][:1].upper() + entry["label"][1:]} for entry in reversed(every)]
    if len(every) > 1:
        choices.append({"value": "all", "label": "Every checkpoint, side by side", "step": None})
    return choices


def _final(job: Job, job_dir: Path) -> dict | None:
    final = library.final_lora(job, job_dir) if job.status == "completed" else None
    if final is None:
        return None
    return {"file": final.relative_to(job_dir).as_posix(), "step": int(job.step), "final": True,
            "label": f"final LoRA (step {job.step})"}


def _checkpoint_entry(step: int, file: str) -> dict:
    return {"file": file, "step": step, "final": False, "label": f"checkpoint at step {step}"}


def _checkpoint(job_dir: Path, step: int) -> dict | None:
    path = job_dir / "checkpoints" / f"step_{step:06d}" / "lora.safetensors"
    return _checkpoint_entry(step, path.relative_to(job_dir).as_posix()) if path.is_file() else None


def _every_lora(job: Job, job_dir: Path) -> list[dict]:
    """Every checkpoint's LoRA in training order, the final LoRA in place of the checkpoint at its step
    (the same weights)."""
    final = _final(job, job_dir)
    found = [_checkpoint_entry(c["step"], c["file"]) for c in library.checkpoints(job_dir)
             if not (final and c["step"] == final["step"])]
    return sorted(found + ([final] if final else []), key=lambda entry: entry["step"])


def loras_for(job: Job, job_dir: Path, which) -> list[dict]:
    """The files `which` names ("final", a checkpoint's step, or "all"): [{file, step, label}]."""
    if which == "all":
        found = _every_lora(job, job_dir)
        if len(found) < 2:
            raise RenderInvalid("This job has only one LoRA file to try: pick it instead of every checkpoint.")
        return found
    if which in (None, "final"):
        final = _final(job, job_dir)
        if final is not None:
            return [final]
        steps = [entry["step"] for entry in library.checkpoints(job_dir)]  # not finished: its newest checkpoint
        if not steps:
            raise RenderInvalid("This job has no LoRA to try yet: the first checkpoint is saved at step "
                                f"{job.config.get('save_every', '?')}, or press Save now.")
        which = steps[-1]
    if isinstance(which, bool) or not isinstance(which, int):
        raise RenderInvalid("'lora' must be \"final\", \"all\" or the step of a checkpoint.")
    found = _checkpoint(job_dir, which)
    if found is None:
        raise RenderInvalid(f"This job has no checkpoint at step {which}.")
    return [found]


def image_count(strengths: list[float], loras: list) -> int:
    """Base once (strength 0), every other strength once per LoRA file."""
    return (0 in strengths) + len(loras) * sum(1 for s in strengths if s != 0)


def parse(body: dict, job: Job, job_dir: Path, library_dir: Path | None = None) -> dict:
    """The config of a new render of `job` from a request body (missing values from the job's previews);
    `library_dir` holds the LoRAs it may render with ("with") or beside it ("beside")."""
    config = job.config
    prompt, body, notes = _prompt(body)
    loras = loras_for(job, job_dir, body.get("lora", "final")) + beside(body.get("beside"), library_dir)
    defaults = {"width": int(config.get("sample_width") or 1024), "height": int(config.get("sample_height") or 1024),
                "steps": int(config.get("sample_steps") or 9), "guidance_scale": config.get("guidance_scale", 0.0)}
    return {**_settings(body, prompt, str(config.get("trigger_word") or ""), loras, defaults),
            "with": stacked(body.get("with"), library_dir),
            "quantize_base": config.get("quantize_base", "none"),
            "float8_matmuls": bool(config.get("float8_matmuls", False)), **({"notes": notes} if notes else {})}


def parse_library(body: dict, name: str, trigger: str, quantize_base: str, demo: bool = False,
                  library_dir: Path | None = None) -> dict:
    """The config of a new render of the library file `name` (its trigger word, if its metadata names one; the
    base model held as `quantize_base` suits the GPU, there being no training job's memory setting)."""
    prompt, body, notes = _prompt(body)
    if body.get("lora", "final") not in ("final", None):
        raise RenderInvalid("A library file is one LoRA: 'lora' can only be \"final\".")
    loras = [_library_entry(name)] + beside(body.get("beside"), library_dir)
    defaults = DEMO_DEFAULTS if demo else LIBRARY_DEFAULTS
    together = stacked(body.get("with"), library_dir)
    if any(item["file"] == name for item in together) or len({lora["file"] for lora in loras}) < len(loras):
        raise RenderInvalid(f"{name} is the LoRA this render tries; pick another one to render with or beside it.")
    return {**_settings(body, prompt, trigger, loras, defaults), LIBRARY_FILE: name, "with": together,
            "quantize_base": quantize_base, "float8_matmuls": quantize_base == "float8",
            **({"notes": notes} if notes else {})}


def _library_entry(name: str) -> dict:
    """A library file among a render's LoRA files (read from trainer/loras, not the job's folder)."""
    return {"file": name, "step": None, "final": True, "label": name.removesuffix(".safetensors"), "library": True}


def beside(value, library_dir: Path | None) -> list[dict]:
    """`beside`: library LoRAs rendered side by side with the one tried, at the same strengths (the original and
    its smaller copy, your LoRA and one from Civitai): a row each."""
    if value is None or value == []:
        return []
    if not isinstance(value, list) or len(value) > MAX_BESIDE or not all(isinstance(v, str) for v in value):
        raise RenderInvalid(f"'beside' is a list of at most {MAX_BESIDE} library LoRA files to render side by side.")
    files = [_library_file(name, library_dir, "beside").name for name in value]
    if len(set(files)) < len(files):
        raise RenderInvalid("'beside' names a LoRA twice.")
    return [_library_entry(name) for name in files]


def _library_file(name: str, library_dir: Path | None, use: str) -> Path:
    """The library's LoRA `name`, checked to be a LoRA of Z-Image's layers (RenderInvalid says why not)."""
    try:
        path = library.library_lora(library_dir, name) if library_dir is not None else None
    except (UnsafePathError, ApiError):
        path = None
    if path is None:
        raise RenderInvalid(f"The LoRA library has no {name!r} to render {use}.")
    try:
        zimage_lora_rank(path, path.name)
    except LoraFileError as exc:
        raise RenderInvalid(str(exc)) from None
    return path


def stacked(value, library_dir: Path | None) -> list[dict]:
    """`with`: library LoRAs applied at their strength to every image of a render, the base model's included (a
    style LoRA under a character LoRA, as ComfyUI chains LoRA loaders): [{file, strength, label}]."""
    if value is None or value == []:
        return []
    shape = (f"'with' is a list of at most {MAX_STACKED} library LoRAs to render with: "
             '[{"file": "style.safetensors", "strength": 0.8}].')
    if not isinstance(value, list) or len(value) > MAX_STACKED or library_dir is None:
        raise RenderInvalid(shape)
    found = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise RenderInvalid(shape)
        path = _library_file(item["file"], library_dir, "with")
        strength = _number(item.get("strength", 1.0), "strength")
        if strength == 0 or abs(strength) > MAX_STRENGTH:
            raise RenderInvalid(f"A LoRA to render with needs a strength between -{MAX_STRENGTH:g} and "
                                f"{MAX_STRENGTH:g}, other than 0.")
        if any(other["file"] == path.name for other in found):
            raise RenderInvalid(f"{path.name} is named twice in 'with'.")
        found.append({"file": path.name, "strength": round(strength, 3), "label": path.stem})
    return found


def _prompt(body: dict) -> tuple[str, dict, list[str]]:
    """The prompt's text (checked) without the preview options pasted with it, the body they change, and notes on
    the options it left out (said on the render's card)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RenderInvalid("Type a prompt to render.")
    if len(prompt) > MAX_PROMPT:
        raise RenderInvalid(f"The prompt is longer than {MAX_PROMPT} characters.")
    prompt, body, notes = _prompt_options(prompt, body)
    if not prompt.strip():
        raise RenderInvalid("Type a prompt to render (before its options).")
    return prompt, body, notes


def _settings(body: dict, prompt: str, trigger: str, loras: list[dict], defaults: dict) -> dict:
    """What every render has: the prompt with the trigger word in, strengths, seed, size, steps, guidance."""
    strengths = strengths_of(body.get("strengths"))
    count = image_count(strengths, loras)
    if count > MAX_IMAGES:
        raise RenderInvalid(f"That is {count} images; at most {MAX_IMAGES} per render: pick fewer strengths or "
                            "fewer LoRA files.")
    seed = body.get("seed")
    low, high = SIZE_RANGE
    guidance = body.get("guidance_scale", defaults["guidance_scale"])
    guidance = _number(guidance if guidance is not None else 0.0, "guidance_scale")
    if not 0 <= guidance <= 20:
        raise RenderInvalid("'guidance_scale' must be between 0 and 20.")
    return {
        "prompt": " ".join(prompt.replace(TRIGGER, trigger).split()),
        "strengths": strengths,
        "seed": random.randrange(2**31) if seed is None else _whole(body, "seed", 0, 0, 2**31 - 1),
        "width": _whole(body, "width", defaults["width"], low, high, 16),
        "height": _whole(body, "height", defaults["height"], low, high, 16),
        "steps": _whole(body, "steps", defaults["steps"], 1, 100),
        "guidance_scale": guidance,
        "loras": loras,
    }


# a preview prompt's options (trainer.preview_prompts) -> the render's fields they set
OPTION_FIELDS = {"width": "width", "height": "height", "seed": "seed", "steps": "steps", "guidance": "guidance_scale"}


# the preview options a render does not take, and why (it would be wrong to drop them without a word)
LEFT_OUT = {"strength": "--m (the LoRA's strength) was left out: the strengths you pick set it here.",
            "negative": "--n (a negative prompt) was left out: a render here has none."}


def _prompt_options(prompt: str, body: dict) -> tuple[str, dict, list[str]]:
    """A prompt pasted with its preview options (--w 832 --h 1216 --d 7 ...): the text alone, the body with the
    size, seed, steps and guidance they give in place of the form's (checked as the form's are), and notes on the
    options left out."""
    text, values, notes = read_options(prompt)
    notes += [LEFT_OUT[key] for key in values if key in LEFT_OUT]
    given = {OPTION_FIELDS[key]: value for key, value in values.items() if key in OPTION_FIELDS}
    return text, {**body, **{key: int(value) if value == int(value) else value for key, value in given.items()}}, notes


def public(render: Job) -> dict:
    """What the job page shows of a render: its settings, state and the images made so far (each with the
    index of its LoRA file in `loras`; None for the base model)."""
    config = render.config
    images = (render.result or {}).get("images") or render.details.get("images") or []
    base = (f"/api/library/tries/{render.id}" if library_file_of(render)
            else f"/api/jobs/{render.parent_id}/files/renders/{render.id}")
    return {
        "id": render.id, "status": render.status, "message": render.message, "error": render.error,
        "cancelling": render.stopping,  # deleted while it renders: it goes at the next step of its picture
        "done": render.done, "total": render.total, "created_at": render.created_at,
        # the picture being made: its denoising step, of how many (one at 2048 px takes a while)
        "picture_step": render.details.get("picture_step"), "picture_steps": render.details.get("picture_steps"),
        "started_at": render.started_at, "finished_at": render.finished_at,
        **{key: config.get(key) for key in ("prompt", "strengths", "seed", "width", "height", "steps",
                                            "guidance_scale")},
        "loras": config.get("loras") or [], "with": config.get("with") or [],
        "notes": config.get("notes") or [],  # what of the prompt's pasted options it left out, and why
        "images": [{"strength": image.get("strength"), "lora": image.get("lora"), "seconds": image.get("seconds"),
                    "url": f"{base}/{image.get('file')}"} for image in images if isinstance(image, dict)],
    }
