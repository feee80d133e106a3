"""The express lane's page and API: from a ZIP or images and a trigger word to a proven LoRA.

    POST /api/express               {trigger_word, kind, name?, preserve?} -> the chain and its (new) dataset
    POST /api/express/<id>/start    {sessions: [...]} after the files are uploaded to the dataset, or {url}
                                    (limit?, spread?: at most that many images, the first or spread over it);
                                    frame_seconds, max_frames for videos (app.frame_choice)
    GET  /api/express/<id>          every stage with its progress and ETA, the plan, samples, the proof (waiting
                                    for files: upload_seen_s, how long ago a piece of them last arrived)
    POST /api/express/<id>/retry | /stop
    POST /api/express/<id>/uncaptioned  {choice: "caption" | "train"}: images the caption service refused or failed
                                    on, while the run waits after captioning (app.express_captions): caption them
                                    again, or train anyway on the trigger word alone
    GET  /api/express/<id>/files/<path>   a file of the run's training job (samples, the LoRA, the proof)
    GET  /api/express/<id>/timelapse/<n>  preview prompt n's pictures in turn, an animated WebP
    GET|PUT /api/express/pod        {"on": true}: stop the pod once its LoRA is ready and nothing else runs
                                    (the trainer dashboard's "Stop the pod when the queue is done", on RunPod)
The run's files are served here, on the page's own origin, from the workspace both services share:
behind RunPod's proxy every port is a host of its own, and a login on this one does not reach the
trainer's.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, render_template

from app import context, express, express_abandoned, express_captions, express_names, express_worker, imaging
from app.express_rules import PRESERVED_CLASS, ExpressInputError, check_kind, check_preserve, check_trigger
from app.frame_choice import check_frames, page_defaults
from app.import_limit import check_limit, check_spread
from app.store import NotFound, summary
from app.url_import import check_url
from app.video_frames import VIDEO_EXTENSIONS
from studio import chunked
from studio.jobs import ACTIVE, Job
from studio.web import ApiError, json_body, json_flag
from trainer import job_files, library, podstop
from trainer.schedule import queue_schedule
from trainer.timelapse import prompts_with_timelapse, timelapse

bp = Blueprint("express", __name__)


def driver() -> express.ExpressDriver:
    return current_app.extensions["express_driver"]


def _load(express_id: str) -> Job:
    job = context.jobs().find(express_id)
    if job is None or job.kind != "express":
        raise ApiError("There is no such express run.", 404)
    return job


_ACCEPT = ",".join(sorted(imaging.IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | {".zip", ".parquet"}))  # the file picker


@bp.get("/express")
def express_page():
    return render_template("express.html", express_id=None, accept=_ACCEPT,
                           page={"chunk_bytes": context.settings().upload_chunk_mb * 2**20,
                                 "frames": page_defaults(context.settings())})


@bp.get("/express/<express_id>")
def express_progress_page(express_id: str):
    _load(express_id)
    return render_template("express.html", express_id=express_id, accept=_ACCEPT,
                           page={"frames": page_defaults(context.settings())})


@bp.get("/api/express")
def list_express():
    return jsonify({"runs": [job.public() for job in context.jobs().list(kind="express", limit=50)]})


@bp.post("/api/express")
def create_express():
    body = json_body()
    try:
        trigger = check_trigger(body.get("trigger_word"))
        kind = check_kind(body.get("kind", "other"))
        preserve = check_preserve(json_flag(body, "preserve"), kind)
        name = body.get("name") or trigger
        if not isinstance(name, str) or not name.strip():
            raise ExpressInputError("name", "The name must be text.")
        if not context.settings().demo:
            express.gpu_precheck()
    except ExpressInputError as exc:
        raise ApiError(exc.message, 422, details=[{"field": exc.field, "message": exc.message}]) from None
    express_abandoned.close_abandoned()
    try:
        dataset = context.store().create(name, trigger)  # a second run of a name: "zxmug 2"
    except ValueError as exc:
        raise ApiError(str(exc), 422) from None
    settings = {"trigger_word": trigger, "kind": kind, "preserve": preserve,
                "export_name": express_names.export_name(name),  # from the name asked: "zxmug-3", not "zxmug-2-2"
                "lora_name": express_names.lora_name(name),
                "sessions": []}
    job, _ = context.jobs().create("express", name=settings["lora_name"], dataset=dataset.id, config=settings,
                                   total=len(express.STAGES), message="Waiting for the upload.")
    context.jobs().start(job.id, None)
    context.jobs().progress(job.id, {"phase": "upload"})
    return jsonify(describe(context.jobs().get(job.id))), 201


@bp.post("/api/express/<express_id>/start")
def start_express(express_id: str):
    job = _load(express_id)
    body = json_body()
    sessions = body.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(s, str) for s in sessions):
        raise ApiError("'sessions' must be a list of upload session ids.", 422)
    url = body.get("url")
    limit = check_limit(body.get("limit"))  # of a link: take at most that many images
    spread = check_spread(body, limit)  # ...spread over it instead of the first ones
    frames = check_frames(body)
    if url is not None:  # a link instead of uploaded files: checked now, downloaded by the import stage
        url = check_url(url)
        if sessions:
            raise ApiError("Give either uploaded files ('sessions') or a 'url', not both.", 422)
    elif limit is not None:
        raise ApiError("'limit' takes the first images of a link: give a 'url' with it.", 422)
    elif not sessions and not context.dataset(job.dataset).image_names():
        raise ApiError("Upload a ZIP or images first: this run has none.", 422)
    express.begin(job, sessions, url, limit, frames, spread)
    driver().ensure_running()
    return jsonify(describe(context.jobs().get(job.id))), 202


@bp.get("/api/express/<express_id>")
def get_express(express_id: str):
    job = _load(express_id)
    if job.status == "running":
        job = express.advance(job)
        driver().ensure_running()
    return jsonify(describe(job))


@bp.get("/api/express/<express_id>/files/<path:name>")
def express_file(express_id: str, name: str):
    train = express.stages_of(_load(express_id)).get("train")
    if train is None:
        raise ApiError("This express run has not started training yet.", 404)
    return job_files.send_job_file(train, context.workspace().jobs / train.id, name)


@bp.get("/api/express/<express_id>/timelapse/<int:index>")
def express_timelapse(express_id: str, index: int):
    """A preview prompt's pictures in turn (trainer.timelapse), on this page's own origin."""
    train = express.stages_of(_load(express_id)).get("train")
    if train is None:
        raise ApiError("This express run has not started training yet.", 404)
    job_dir = context.workspace().jobs / train.id
    return job_files.send_job_file(train, job_dir, timelapse(job_dir, index).relative_to(job_dir).as_posix())


@bp.post("/api/express/<express_id>/retry")
def retry_express(express_id: str):
    job = express.retry(_load(express_id))
    driver().ensure_running()
    return jsonify(describe(job))


@bp.post("/api/express/<express_id>/uncaptioned")
def choose_uncaptioned(express_id: str):
    job = express.choose_uncaptioned(_load(express_id), json_body().get("choice"))
    driver().ensure_running()
    return jsonify(describe(job))


@bp.post("/api/express/<express_id>/stop")
def stop_express(express_id: str):
    return jsonify(describe(express.stop(_load(express_id))))


def _stage(stage: str, job: Job | None, express_row: Job) -> dict:
    if job is None:
        if stage == "train" and express_row.status == "completed":  # it trained: its job was deleted since
            return {"stage": stage, "status": "deleted", "done": 0, "total": 0,
                    "message": "Its training job and LoRA were deleted (in the LoRA library or the trainer). Recently "
                               "deleted, on the LoRA library page, brings them back for 7 days."}
        if stage == express_row.phase and express_row.status in ("failed", "stopped"):  # it could not start
            return {"stage": stage, "status": express_row.status, "done": 0, "total": 0,
                    "error": express_row.error, "message": express_row.message}
        done = express.STAGES.index(stage) < express.STAGES.index(express_row.phase) \
            if express_row.phase in express.STAGES else express_row.phase == "done"
        return {"stage": stage, "status": "skipped" if done else "waiting", "done": 0, "total": 0}
    out = {"stage": stage, "job_id": job.id, "status": job.status, "done": job.done, "total": job.total,
           "eta_s": job.eta_s, "message": job.message, "error": job.error, "stopping": job.stopping,
           "errors": job.errors[:50], "result": job.result}
    if stage == "import":  # a link's download, before the images are checked
        progress = job.public()
        out.update({key: progress.get(key) for key in ("phase", "bytes_done", "bytes_total")})
    if stage == "train":
        out.update({"loss": job.loss, "job_page": f"/jobs/{job.id}", "edit_settings": f"/new?from={job.id}",
                    "dataset_version": job.dataset_version, "schedule": _train_schedule(job)})
    return out


def _train_schedule(train: Job) -> dict | None:
    """When a queued training stage should start and be done, behind the trainer's other jobs."""
    if train.status != "queued":
        return None
    return queue_schedule(context.settings(), context.jobs()).get(train.id)


def _training_outputs(express_id: str, train: Job, keep: str | None = None) -> dict:
    """Samples (base / LoRA / LoRA without trigger) and, once finished, the downloadable proof, as URLs
    of this service (express_file), with how much the LoRA leaks (and `keep`, the class word to train it
    again with when it does)."""
    workspace = context.workspace()
    job_dir = workspace.jobs / train.id
    here = f"/api/express/{express_id}"
    shots = library.samples(job_dir)
    for group in shots:
        group["pairs"] = library.pair_urls(train.id, group["pairs"], here)
    out: dict = {"samples": shots, "timelapses": [{"index": i, "url": f"{here}/timelapse/{i}"}
                                                  for i in prompts_with_timelapse(shots)]}
    if train.status == "completed":
        lora = library.final_lora(train, job_dir)
        copy = library.library_copy(workspace, train, lora) if lora else None  # <name>-<job id> when taken
        found = library.proof(job_dir) or {}
        comfy = workspace.comfyui_loras
        out["proof"] = {
            "lora": library.file_url(train.id, f"lora/{lora.name}", here) if lora else None,
            "lora_file": copy.name if copy else lora.name if lora else None,  # as the library names it (renamed)
            "lora_bytes": lora.stat().st_size if lora else None,
            "grid": library.file_url(train.id, found["grid"], here) if found.get("grid") else None,
            "readme": library.file_url(train.id, found["readme"], here) if found.get("readme") else None,
            "workflow": library.file_url(train.id, found["workflow"], here) if found.get("workflow") else None,
            "library_path": str(copy) if copy else None,
            "comfyui_path": str(comfy / copy.name) if comfy and copy and (comfy / copy.name).exists() else None,
            "leak": library.leak_summary(shots),
            "keep_class": keep,
        }
    return out


def describe(job: Job) -> dict:
    stages = express.stages_of(job)
    body = {"express": job.public(), "stages": [_stage(s, stages.get(s), job) for s in express.STAGES],
            "plan": job.config.get("plan"), "active": job.status in ACTIVE,
            "price": current_app.extensions["pod_price"].public(),  # what the run's time cost (None: unknown)
            "uncaptioned": express_captions.summary(job),  # images on the trigger word alone, and why
            "worker": express_worker.worker_notice(job, stages.get("train"))}  # none running: training cannot go on
    try:
        body["dataset"] = summary(context.dataset(job.dataset))
    except NotFound:  # the dataset was deleted: the run's record stays readable
        body["dataset"] = None
    if job.status == "running" and job.phase == "upload":  # files arriving from another tab or window, or not
        arrived = chunked.last_activity(context.workspace().uploads, {"dataset": job.dataset})
        body["upload_seen_s"] = round(max(0.0, time.time() - arrived), 1) if arrived else None
    if stages.get("train"):
        # the class word a run that leaks could be trained again with (Keep other people), unless it already was
        keep = None if job.config.get("preserve") else PRESERVED_CLASS.get(job.config.get("kind"))
        body.update(_training_outputs(job.id, stages["train"], keep))
    return body


@bp.get("/api/express/pod")
def express_pod():
    return jsonify(podstop.choice_state(context.settings()))


@bp.put("/api/express/pod")
def express_pod_choice():
    return jsonify(podstop.choose_from_request(context.settings(), json_body()))
