"""JSON API for "Try the LoRA": queue a render of a training job's LoRA, list them, delete one."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

from flask import Blueprint, jsonify

from studio.jobs import Job
from studio.web import ApiError, json_body
from studio.workspace import safe_name
from trainer import renders
from trainer.jobs_api import announce, keep_states_honest, load_job, store, workspace
from trainer.preview_prompts import PreviewPrompt, parse
from trainer.renders import PAUSED

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
    choices = renders.lora_choices(job, workspace().jobs / job.id)
    config = job.config
    first = _first_prompt(config)
    shown = [renders.public(render) for render in found]
    running = _training()
    if any(render["status"] == "queued" for render in shown):  # what they wait for now, not when they were made
        note = _waiting_note(running)
        shown = [{**render, "message": note} if render["status"] == "queued" else render for render in shown]
    training = {"id": running.id, "name": running.name, "stopping": running.stopping} if running else None
    warm = any(worker["state"] == "warm" for worker in store().workers())  # models loaded: a render starts at once
    return jsonify({"renders": shown, "loras": choices, "training": training, "warm": warm,
                    "defaults": {"strengths": renders.DEFAULT_STRENGTHS, "width": first.width,
                                 "height": first.height, "steps": first.steps,
                                 "trigger_word": config.get("trigger_word") or "", "prompt": first.text}})


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
        config = renders.parse(body, job, workspace().jobs / job.id)
    except renders.RenderInvalid as exc:
        raise ApiError(str(exc), 422) from None
    waiting = store().list(("queued",), parent_id=job.id, kind=renders.KIND, limit=renders.MAX_WAITING + 1)
    if len(waiting) >= renders.MAX_WAITING:
        raise ApiError(f"{len(waiting)} renders of this job are waiting already; let them finish first.", 429)
    # a double click returns the first render (the page sends the seed, so a new click is a new render)
    fingerprint = hashlib.sha256(json.dumps([job.id, config], sort_keys=True).encode()).hexdigest()
    render, _created = store().create(renders.KIND, name=config["prompt"][:80], parent_id=job.id, config=config,
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
    if not store().delete(render.id):
        raise ApiError("It is rendering now; delete it when it is done (it takes seconds).", 409)
    renders.remove_files(workspace(), render)
    return jsonify({"deleted": True, "id": render.id})
