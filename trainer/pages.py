"""The trainer's pages: dashboard, new job form, job page, compare runs, LoRA library (and its try page). Each is
filled by its own script from the same JSON API that API clients use."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from flask import Blueprint, current_app, render_template, request

from studio import exports
from studio.model_status import format_bytes
from studio.web import ApiError
from studio.workspace import UnsafePathError, safe_name
from trainer import library, library_facts, trash
from trainer.export_triggers import trigger_words
from trainer.jobs_api import load_job

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    comfy = current_app.config["STUDIO_WORKSPACE"].comfyui_loras is not None
    return render_template("trainer_index.html", page="dashboard", comfy=comfy,
                           demo=current_app.config["STUDIO_SETTINGS"].demo)


@bp.get("/new")
def new_job():
    return render_template("trainer_new.html", page="new")


@bp.get("/jobs/<job_id>")
def job_page(job_id):
    try:
        job = load_job(safe_name(job_id))
    except (ApiError, UnsafePathError):  # a link to a deleted job: a page that says where it went, not JSON
        return _gone(job_id), 404
    # the config shown as text, which the template escapes as it does any text: Jinja's tojson writes ' < > & as
    # \u0027, \u003c, ..., right inside a <script> but shown as those six characters in a <pre>
    config_text = json.dumps(job.config, indent=2, sort_keys=True, ensure_ascii=False)
    return render_template("trainer_job.html", page="job", job=job, triggers=_trigger_words(job),
                           config_text=config_text)


def _gone(job_id: str) -> str:
    """The page of a job that is not here: where Recently deleted keeps it, when it does."""
    deleted = trash.deleted_job(current_app.config["STUDIO_WORKSPACE"], job_id)
    if deleted is not None:
        deleted = {"name": deleted["name"], "until": time.strftime("%d %B", time.gmtime(deleted["expires_at"]))}
    return render_template("trainer_gone.html", page="job", job_id=job_id, deleted=deleted, days=trash.TRASH_DAYS)


def _trigger_words(job) -> list[str]:
    """For a job on several datasets: the trigger word each one trains with, picked as the engine picks them
    (the job's for the first, each other's own from its export); [] for a job on one dataset."""
    if len(job.sources) < 2:
        return []
    workspace = current_app.config["STUDIO_WORKSPACE"]
    folders = []
    for source in job.sources:
        try:
            folders.append(exports.version_dir(workspace, source["version"]) if source.get("version")
                           else workspace.export_dir(safe_name(source["name"])))
        except (UnsafePathError, ValueError):
            folders.append(Path("/nonexistent"))  # gone or never valid: the job's word, as the engine would
    return trigger_words(folders, (job.config or {}).get("trigger_word") or "")


@bp.get("/library")
def library_page():
    return render_template("trainer_library.html", page="library")


@bp.get("/library/try/<name>")
def library_try_page(name):
    """Try a file of the LoRA library that no training job of this pod made (a LoRA added from a link, a smaller
    copy): the job page's Try panel on its own."""
    path = library.library_lora(current_app.config["STUDIO_WORKSPACE"].loras, name)
    facts = library_facts.lora_facts(path)
    meta = facts.metadata
    lora = {"name": path.stem, "file": path.name, "size": format_bytes(path.stat().st_size),
            "rank": facts.rank, "trigger": library_facts.trigger_of(meta), "lokr": facts.lokr,
            "resized_from": meta.get("resized_from"), "converted_from": meta.get("converted_from"),
            "civitai": meta["civitai_url"] if str(meta.get("civitai_url", "")).startswith(("https://", "http://"))
            else None,
            "title": meta.get("modelspec.title"),
            "source": meta["source_url"] if str(meta.get("source_url", "")).startswith(("https://", "http://"))
            else None,
            "source_host": urlsplit(meta.get("source_url") or "").hostname,
            "download_url": f"/api/library/files/{quote(path.name)}"}
    return render_template("trainer_library_try.html", page="library", lora=lora)


MAX_COMPARED = 4


@bp.get("/compare")
def compare_page():
    """Runs side by side: ?jobs=<id>,<id>[,...] (two to four training jobs)."""
    ids = list(dict.fromkeys(part.strip() for part in request.args.get("jobs", "").split(",") if part.strip()))
    jobs, gone = [], []
    for job_id in ids[:MAX_COMPARED]:  # a link kept from before a job was deleted shows the others, and says so
        try:
            jobs.append(load_job(job_id))
        except (ApiError, UnsafePathError):
            gone.append(job_id)
    return render_template("trainer_compare.html", page="compare", gone=gone, left_out=ids[MAX_COMPARED:],
                           most=MAX_COMPARED, jobs=[{"id": job.id, "name": job.name} for job in jobs])
