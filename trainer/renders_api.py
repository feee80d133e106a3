"""JSON API for "Try the LoRA": queue a render of a training job's LoRA or of a library file, list them, delete one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

from flask import Blueprint, jsonify, request

from studio.jobs import Job, JobNotFound, JobStateError
from studio.web import ApiError, json_body
from studio.workspace import confined, safe_name
from trainer import job_files, library, library_facts, renders
from trainer.jobs_api import announce, keep_states_honest, load_job, settings, store, workspace
from trainer.lora_file import LoraFileError, zimage_lora_rank
from trainer.preview_prompts import PreviewPrompt, parse
from trainer.render_workflow import workflow as render_workflow_of
from trainer.renders import PAUSED
from trainer.validation import detect_gpu

bp = Blueprint("renders", __name__)


def _training() -> Job | None:
    """The training job on the GPU now, if any."""
    running = store().list(("running",), kind="train", limit=1)
    return running[0] if running else None


def _waiting_note(job: Job | None) -> str:
    """Why a new render may not start at once: the one GPU is training `job`."""
    if job is None:
        return "Waiting for the worker."
    eta = f" (about {round(job.eta_s / 60) or 1} min left)" if job.eta_s else ""
    return f"Waits for the training job “{job.name}” to finish{eta}: the GPU trains one thing at a time."


@bp.post("/api/jobs/<job_id>/pause")
def pause_for_renders(job_id):
    """Stop a running training job at its next step (a checkpoint is saved) and queue it again at once:
    the queued renders run first, then it continues from that step by itself."""
    job = load_job(job_id)
    if job.status != "running" or job.stopping:
        raise ApiError(f"The job is {'stopping' if job.stopping else job.status}; only a running job can pause.", 409)
    store().progress(job.id, {PAUSED: True})
    job = store().request_stop(job.id, reason="Pausing for the renders: saving a checkpoint, then they run and "
                                              "it continues by itself.")
    announce(job)
    return jsonify({"job": job.public()}), 202


@bp.get("/api/jobs/<job_id>/renders")
def list_renders(job_id):
    keep_states_honest()
    job = load_job(job_id)
    found = store().list(parent_id=job.id, kind=renders.KIND, limit=200)
    config = job.config
    first = _first_prompt(config)
    return _listing(found, renders.lora_choices(job, workspace().jobs / job.id),
                    {"width": first.width, "height": first.height, "steps": first.steps,
                     "trigger_word": config.get("trigger_word") or "", "prompt": first.text,
                     "library_file": (job.result or {}).get("library_file")})


def _listing(found: list[Job], choices: list[dict], defaults: dict):
    """The Try panel's listing: the renders (a queued one says what it waits for now), the LoRA files to pick
    from, the training job on the GPU, whether the models are loaded, and the form's defaults."""
    shown = [renders.public(render) for render in found]
    running = _training()
    if any(render["status"] == "queued" for render in shown):  # what they wait for now, not when they were made
        note = _waiting_note(running)
        shown = [{**render, "message": note} if render["status"] == "queued" else render for render in shown]
    training = {"id": running.id, "name": running.name, "stopping": running.stopping} if running else None
    warm = any(worker["state"] == "warm" for worker in store().workers())  # models loaded: a render starts at once
    return jsonify({"renders": shown, "loras": choices, "training": training, "warm": warm,
                    "defaults": {"strengths": renders.DEFAULT_STRENGTHS, **defaults}})


def _first_prompt(config: dict) -> PreviewPrompt:
    """The job's first preview prompt with its own size and steps (a prompt's --w, --h, --s), for the Try form."""
    prompts = config.get("sample_prompts") or []
    job = SimpleNamespace(sample_width=config.get("sample_width"), sample_height=config.get("sample_height"),
                          sample_steps=config.get("sample_steps"), seed=config.get("seed") or 0,
                          guidance_scale=config.get("guidance_scale") or 0.0)
    return parse(prompts[0] if prompts and isinstance(prompts[0], str) else "", job)


@bp.post("/api/jobs/<job_id>/renders")
def create_render(job_id):
    job = load_job(job_id)
    body = json_body()
    try:
        config = renders.parse(body, job, workspace().jobs / job.id, workspace().loras)
    except renders.RenderInvalid as exc:
        raise ApiError(str(exc), 422) from None
    waiting = store().list(("queued",), parent_id=job.id, kind=renders.KIND, limit=renders.MAX_WAITING + 1)
    return _queue(config, job.id, len(waiting), "this job")


def _queue(config: dict, parent_id: str | None, waiting: int, whose: str):
    """A new render of `config` in the job store (202), unless MAX_WAITING of the same LoRA wait already."""
    if waiting >= renders.MAX_WAITING:
        raise ApiError(f"{waiting} renders of {whose} are waiting already; let them finish first.", 429)
    # a double click returns the first render (the page sends the seed, so a new click is a new render)
    fingerprint = hashlib.sha256(json.dumps([parent_id, config], sort_keys=True).encode()).hexdigest()
    render, _created = store().create(renders.KIND, name=config["prompt"][:80], parent_id=parent_id, config=config,
                                      total=renders.image_count(config["strengths"], config["loras"]),
                                      message=_waiting_note(_training()),
                                      fingerprint=fingerprint, dedup_window_s=5.0)
    return jsonify({"render": renders.public(render)}), 202


@bp.delete("/api/jobs/<job_id>/renders/<render_id>")
def delete_render(job_id, render_id):
    job = load_job(job_id)
    render = store().find(safe_name(render_id))
    if render is None or render.kind != renders.KIND or render.parent_id != job.id:
        raise ApiError(f"This job has no render {render_id!r}.", 404)
    return _delete(render)


@bp.get("/api/jobs/<job_id>/renders/<render_id>/workflow")
def render_workflow(job_id, render_id):
    """`?image=N`: the ComfyUI workflow of picture N of the render (trainer.render_workflow); its LoRA files named
    as ComfyUI's loras folder has them (a checkpoint under its To library name)."""
    job = load_job(job_id)
    render = store().find(safe_name(render_id))
    if render is None or render.kind != renders.KIND or render.parent_id != job.id:
        raise ApiError(f"This job has no render {render_id!r}.", 404)
    names = []
    for lora in render.config.get("loras") or []:
        if lora.get("library"):  # a library LoRA beside the job's: its own name
            names.append(lora["file"])
        elif lora.get("final"):
            copy = library.library_copy(workspace(), job, confined(workspace().jobs, job.id, *lora["file"].split("/")))
            names.append(copy.name if copy else Path(lora["file"]).name)
        else:
            names.append(library.published_checkpoint(workspace(), job, lora["step"])
                         or library.checkpoint_name(job, lora["step"]))
    return _workflow(render, names)


def _workflow(render: Job, names: list[str]):
    image = request.args.get("image")
    try:
        nodes, filename = render_workflow_of(render.config, names, int(image) if image is not None else None)
    except ValueError as exc:
        raise ApiError(str(exc) if image is None or image.lstrip("-").isdigit() else "'image' is a whole number.",
                       422) from None
    except (KeyError, TypeError, IndexError):  # a render of an earlier release, or not one of Try the LoRA
        raise ApiError("This render's settings do not make a ComfyUI workflow.", 409) from None
    response = jsonify(nodes)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _delete(render: Job):
    """A render that waits or ended goes at once (200); one rendering now is cancelled (202): it stops after the
    denoising step of the picture it is making and goes with the pictures it made (trainer.render_job), the models
    staying loaded."""
    if store().delete(render.id):
        renders.remove_files(workspace(), render)
        return jsonify({"deleted": True, "id": render.id})
    try:
        store().request_stop(render.id, delete=True, reason="Cancelling: it stops at its picture's next step.")
    except JobNotFound:
        raise ApiError(f"There is no render {render.id!r} any more.", 404) from None
    except JobStateError:  # it ended meanwhile
        pass
    if store().delete(render.id):  # it ended, or was queued again (a worker restart), meanwhile
        renders.remove_files(workspace(), render)
        return jsonify({"deleted": True, "id": render.id})
    return jsonify({"deleted": False, "cancelling": True, "id": render.id}), 202


# "Try it" for a file of the LoRA library that no training job of this pod made (a LoRA added from a link, a
# smaller copy, a checkpoint added to the library, a file copied in by hand)


def library_renders(name: str, statuses: tuple[str, ...] | None = None, limit: int = 200) -> list[Job]:
    """The renders of the library file `name`, newest first (at most `limit` of them, read as far as needed)."""
    found = []
    for render_id in store().holders(renders.KIND, renders.LIBRARY_FILE, name, field="config"):
        render = store().find(render_id)
        if render is not None and (not statuses or render.status in statuses):
            found.append(render)
            if len(found) >= limit:
                break
    return found


def latest_try(name: str) -> dict | None:
    """The library card's pictures of a file no job made: its latest completed render, {urls, prompts} (each
    picture's strength and prompt, as its title)."""
    done = library_renders(name, ("completed",), limit=1)  # for every card of the library page: the newest only
    if not done:
        return None
    shown = renders.public(done[0])
    images = [image for image in shown["images"] if image["lora"] in (None, 0)][:3]  # its own, not those beside
    titles = ["Base" if not image["strength"] else f"LoRA {image['strength']:g}" for image in images]
    return {"urls": [image["url"] for image in images],
            "prompts": [f"{title}: {shown['prompt']}" for title in titles]}


def _library_quantize() -> str:
    """How a library file's renders hold the base model: float8 on a card under 30 GB (the memory presets'
    line: the 16 and 24 GB ones train in float8), bf16 otherwise and with no GPU (the demo)."""
    gpu = detect_gpu()
    return "float8" if gpu is not None and gpu.memory_gb < 30 else "none"


@bp.get("/api/library/files/<name>/renders")
def list_library_renders(name):
    keep_states_honest()
    path = library.library_lora(workspace().loras, name)
    trigger = library_facts.trigger_of(library_facts.lora_facts(path).metadata) or ""
    choices = [{"value": "final", "label": path.stem, "step": None}]
    defaults = renders.DEMO_DEFAULTS if settings().demo else renders.LIBRARY_DEFAULTS
    return _listing(library_renders(path.name), choices,
                    {**defaults, "trigger_word": trigger, "size_note": "demo model" if settings().demo else "default",
                     "prompt": f"{renders.TRIGGER}, " if trigger else ""})


@bp.post("/api/library/files/<name>/renders")
def create_library_render(name):
    path = library.library_lora(workspace().loras, name)
    try:
        zimage_lora_rank(path, path.name)
    except LoraFileError as exc:
        raise ApiError(str(exc), 422) from None
    trigger = library_facts.trigger_of(library_facts.lora_facts(path).metadata) or ""
    try:
        config = renders.parse_library(json_body(), path.name, trigger, _library_quantize(), settings().demo,
                                       workspace().loras)
    except renders.RenderInvalid as exc:
        raise ApiError(str(exc), 422) from None
    return _queue(config, None, len(library_renders(path.name, ("queued",), limit=renders.MAX_WAITING + 1)), path.name)


@bp.delete("/api/library/files/<name>/renders/<render_id>")
def delete_library_render(name, render_id):
    render = store().find(safe_name(render_id))
    if render is None or renders.library_file_of(render) != safe_name(name):
        raise ApiError(f"{name} has no render {render_id!r}.", 404)
    return _delete(render)


@bp.get("/api/library/files/<name>/renders/<render_id>/workflow")
def library_render_workflow(name, render_id):
    render = store().find(safe_name(render_id))
    if render is None or renders.library_file_of(render) != safe_name(name):
        raise ApiError(f"{name} has no render {render_id!r}.", 404)
    return _workflow(render, [lora["file"] for lora in render.config.get("loras") or []])


@bp.get("/api/library/tries/<render_id>/<path:name>")
def library_render_file(render_id, name):
    """An image (or the log) of a library file's render; `?thumb=1` its small preview."""
    render = store().find(safe_name(render_id))
    if render is None or not renders.library_file_of(render):
        raise ApiError(f"There is no render {render_id!r} of a library file.", 404)
    served, parts = renders.home(workspace(), render)
    return job_files.send_job_file(render, served, "/".join((*parts, name)))
