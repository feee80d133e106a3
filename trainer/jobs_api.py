"""JSON API for jobs: create (validated, de-duplicated), list, inspect, control, files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from studio import exports
from studio.jobs import ACTIVE, Job, JobNotFound, JobStore
from studio.settings import Settings
from studio.web import ApiError, int_arg, json_body
from studio.workspace import Workspace, safe_name
from trainer import job_files, library, schedule, trash
from trainer.evaluation_set import EVAL_FILE
from trainer.recovery import reconcile, resume_hint
from trainer.run_job import training_sources
from trainer.step_dirs import latest_checkpoint_step
from trainer.submit import JobInvalid, submit_job
from trainer.timelapse import prompts_with_timelapse
from trainer.validation import validate

bp = Blueprint("jobs", __name__)
LOG_CHUNK = 256 * 1024
LOG_TAIL = 64 * 1024
_reconcile_lock = threading.Lock()


def store() -> JobStore:
    return current_app.extensions["job_store"]


def workspace() -> Workspace:
    return current_app.config["STUDIO_WORKSPACE"]


def settings() -> Settings:
    return current_app.config["STUDIO_SETTINGS"]


def price() -> dict | None:
    """What this machine costs an hour (studio.pod_price), for the pages to put money beside times; with several
    workers (one per GPU, studio.gpus) `jobs_at_once` says how many jobs share it, each paying its GPU's part."""
    info = current_app.extensions["pod_price"].public()
    workers = len(store().workers())
    return {**info, "jobs_at_once": workers} if info and workers > 1 else info


def announce(job: Job) -> None:
    current_app.extensions["trainer_webhooks"].job_status(job)


def keep_states_honest() -> None:
    """At most every few seconds: fix jobs whose worker died (see trainer.recovery)."""
    with _reconcile_lock:
        if time.monotonic() - current_app.extensions.get("trainer_reconciled_at", -1e9) < 5.0:
            return
        current_app.extensions["trainer_reconciled_at"] = time.monotonic()
    for job in reconcile(store(), workspace().jobs, workspace=workspace()):
        announce(job)


def load_job(job_id: str) -> Job:
    """A training job by id (404 for any other kind of job)."""
    try:
        job = store().get(safe_name(job_id))
    except JobNotFound as exc:
        raise ApiError(str(exc), 404) from None
    if job.kind != "train":
        raise ApiError(f"There is no training job {job_id!r}.", 404)
    return job


def _require_training_data(job: Job) -> None:
    """409 when a dataset version the job trains on is no longer on disk (before queueing it again)."""
    try:
        training_sources(workspace(), job)
    except exports.ExportMissing as exc:
        raise ApiError(str(exc), 409) from None


def _invalid(report) -> ApiError:
    return ApiError(str(JobInvalid(report)), 422, details=report.errors)


def create_job(payload: dict, idem_key: str | None = None) -> tuple[Job, bool, dict]:
    try:
        job, created, report = submit_job(settings(), store(), payload, idem_key=idem_key)
    except JobInvalid as exc:
        raise _invalid(exc.report) from None
    if created:
        announce(job)
    return job, created, report.to_dict()


@bp.post("/api/jobs/validate")
def validate_job():
    payload = json_body()
    report = validate(settings(), payload)
    body = {**report.to_dict(), "price": price()}
    if not report.ok:
        body.update({"error": _invalid(report).message, "details": report.errors})
    # ?report=1 (the new job form's check as it is typed in): the report is the answer, 200 with ok false when a
    # setting is invalid, so a form being filled in is not a run of failed requests in the browser's console
    return jsonify(body), (200 if report.ok or request.args.get("report") == "1" else 422)


@bp.get("/api/jobs")
def list_jobs():
    keep_states_honest()
    jobs = store().list(kind="train", limit=int_arg("limit", 200, 1, 1000))
    # and every waiting or running one, as the live stream sends them: with 100+ jobs, the oldest are the next to run
    shown = {job.id for job in jobs}
    jobs += [job for job in store().list(ACTIVE, kind="train", limit=10_000) if job.id not in shown]
    queue = store().queue()
    return jsonify({"jobs": [job.public() for job in jobs], "workers": store().workers(),
                    "queue": [job.id for job in queue], "schedule": queue_schedule(queue), "price": price()})


def queue_schedule(queue: list[Job] | None = None) -> dict[str, dict]:
    """When each queued job should start and be done (trainer.schedule): rough, from the estimates."""
    return schedule.queue_schedule(settings(), store(), queue)


@bp.post("/api/jobs")
def post_job():
    payload = json_body()
    idem_key = request.headers.get("Idempotency-Key") or payload.pop("idempotency_key", None)
    if idem_key is not None and (not isinstance(idem_key, str) or len(idem_key) > 200):
        raise ApiError("The idempotency key must be text of at most 200 characters.", 400)
    job, created, report = create_job(payload, idem_key)
    body = {"job": job.public(), "created": created, "warnings": report["warnings"], "price": price(),
            **{key: report[key] for key in ("estimated_duration_s", "estimated_memory_gb")}}
    return jsonify(body), (201 if created else 200)


def job_detail(job: Job) -> dict:
    job_dir = workspace().jobs / job.id
    # a job training further (Train more steps), or stopped or failed on the way, still has the LoRA it finished
    # with: shown with the step it is of, so a run cut short never looks as if it took the finished LoRA along
    earlier = job.status != "completed" and bool((job.result or {}).get("lora_path"))
    lora = library.final_lora(job, job_dir) if job.status == "completed" or earlier else None
    lora_info = None
    if lora is not None:
        try:
            relative = lora.resolve().relative_to(job_dir.resolve()).as_posix()
            lora_info = {"file": lora.name, "path": relative, "size": lora.stat().st_size,
                         "library_file": (job.result or {}).get("library_file"),  # its name in the library, ComfyUI
                         "earlier_step": (job.result or {}).get("steps") if earlier else None}
        except (ValueError, OSError):
            lora_info = None
    position = planned = worker = None
    if job.status == "queued":
        queue = store().queue()
        ids = [queued.id for queued in queue]
        position = ids.index(job.id) + 1 if job.id in ids else None
        planned = queue_schedule(queue).get(job.id)
        worker = bool(store().workers())  # none: nothing starts it (the page says so, not a start time)
    checkpoints = [{**c, "library_file": library.published_checkpoint(workspace(), job, c["step"]),
                    "download_name": library.checkpoint_name(job, c["step"])} for c in library.checkpoints(job_dir)]
    return {"job": job.public(), "checkpoints": checkpoints, "lora": lora_info,
            "latest_checkpoint": latest_checkpoint_step(job_dir), "queue_position": position, "schedule": planned,
            "worker_running": worker,
            "proof": library.proof(job_dir) if lora_info else None, "price": price()}


@bp.get("/api/jobs/<job_id>")
def get_job(job_id):
    keep_states_honest()
    return jsonify(job_detail(load_job(job_id)))


@bp.delete("/api/jobs/<job_id>")
def delete_job(job_id):
    from trainer.hub_publish import not_publishing

    job = load_job(job_id)
    # its files would go under the upload: it fails at the next one, a commit on its way lands
    with not_publishing(job.id, "This job's LoRA is being published to Hugging Face: wait for the upload to finish "
                                "(or stop it on the job's page), then delete the job."):
        if job.status == "running":
            job = store().request_stop(job.id, delete=True, reason="Stopping, then deleting.")
            return jsonify({"deleted": False, "stopping": True, "job": job.public()}), 202
        entry = trash.trash_job(workspace(), store(), job)  # kept a while in Recently deleted, with its renders
    if entry is None:  # it was claimed a moment ago: stop it, then delete
        job = store().request_stop(job.id, delete=True, reason="Stopping, then deleting.")
        return jsonify({"deleted": False, "stopping": True, "job": job.public()}), 202
    current_app.extensions["trainer_webhooks"].job_deleted(job)
    return jsonify({"deleted": True, "id": job.id, "trash": entry})


def _touch_control(job: Job, name: str) -> None:
    folder = workspace().jobs / job.id / "control"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).touch()


@bp.post("/api/jobs/<job_id>/stop")
def stop_job(job_id):
    job = store().request_stop(load_job(job_id).id, reason="Stopping: saving a checkpoint.")
    announce(job)
    return jsonify({"job": job.public()})


@bp.post("/api/jobs/<job_id>/run-next")
def run_next(job_id):
    """A queued job moves to the front of the queue: it starts when the running one ends."""
    job = store().move_to_front(load_job(job_id).id)  # its status is as it was: no webhook is told of a new place
    return jsonify({"job": job.public()})


@bp.post("/api/jobs/<job_id>/resume")
def resume_job(job_id):
    job = load_job(job_id)
    _require_training_data(job)
    hint = resume_hint(latest_checkpoint_step(workspace().jobs / job.id))
    job = store().resume(job.id, f"Queued again. {hint}")
    announce(job)
    return jsonify({"job": job.public()})


@bp.post("/api/jobs/<job_id>/continue")
def continue_job(job_id):
    """Train a completed LoRA for more steps: the same job goes on from its final checkpoint."""
    from trainer.recipes import ConfigError, get_recipe

    job = load_job(job_id)
    more = json_body().get("more_steps")
    if not isinstance(more, int) or isinstance(more, bool) or not 1 <= more <= 1_000_000:
        raise ApiError("'more_steps' must be a whole number of steps to add (1 to 1,000,000).", 422)
    if job.status != "completed":
        raise ApiError(f"The job is {job.status}: only a completed job is continued (a stopped one is resumed).",
                       409)
    from trainer.hub_publish import not_publishing, publishing

    refusal = ("This job's LoRA is being published to Hugging Face: wait for it to finish (or stop it), then train "
               "more steps.")
    if publishing(job.id):  # training further replaces the LoRA file on its way to the hub
        raise ApiError(refusal, 409)
    if latest_checkpoint_step(workspace().jobs / job.id) != job.step:
        raise ApiError(f"The job has no checkpoint at its last step ({job.step}) to continue from: clone it "
                       "instead.", 409)
    _require_training_data(job)
    total = job.step + more
    # asked for more steps after the job stopped itself for overfitting: the added steps are trained, not cut short
    watching = bool(job.config.get("stop_when_overfitting"))
    try:
        config = get_recipe(job.recipe).config_from_dict({**job.config, "steps": total,
                                                          **({"stop_when_overfitting": False} if watching else {})
                                                          }).to_dict()
    except ConfigError as exc:
        raise ApiError(f"The job cannot go on to {total} steps: {exc}", 422, details=exc.errors) from None
    note = " Stop when overfitting is off for them." if watching else ""
    with not_publishing(job.id, refusal):  # and none starts before it is queued again
        store().update(job.id, config=config, total=total)
        job = store().resume(job.id, f"Waiting for the worker: {more} more steps, from step {job.step} to "
                                     f"{total}.{note}", also_completed=True)
    announce(job)
    return jsonify({"job": job.public()})


@bp.post("/api/jobs/<job_id>/checkpoints/<int:step>/publish")
def publish_checkpoint(job_id, step):
    """A checkpoint's LoRA (the step that looked best in Try the LoRA) into the LoRA library and ComfyUI."""
    job = load_job(job_id)
    name, placed = library.publish_checkpoint(workspace(), job, step)
    return jsonify({"file": name, "placed": [str(path) for path in placed],
                    "comfyui": workspace().comfyui_loras is not None})


@bp.post("/api/jobs/<job_id>/sample")
def sample_now(job_id):
    return _request_action(job_id, "sample")


@bp.post("/api/jobs/<job_id>/save")
def save_now(job_id):
    return _request_action(job_id, "save")


def _request_action(job_id: str, action: str):
    job = load_job(job_id)
    if job.status != "running":
        raise ApiError(f"The job is {job.status}; {action} now works only while it is running.", 409)
    _touch_control(job, action)
    what = "Preview images are" if action == "sample" else "A checkpoint is"
    return jsonify({"requested": action, "message": f"{what} made after the current step."}), 202


def _clone_datasets(source: Job, overrides: dict) -> dict:
    """What a copy trains on: the datasets the request names, else the source's (their current exports)."""
    if overrides.get("datasets") is not None:
        return {"datasets": overrides["datasets"]}
    if overrides.get("dataset") or not source.datasets:
        return {"dataset": overrides.get("dataset") or source.dataset}
    return {"datasets": [{"name": entry["name"], "repeats": entry["repeats"]} for entry in source.datasets]}


@bp.post("/api/jobs/<job_id>/clone")
def clone_job(job_id):
    source = load_job(job_id)
    overrides = json_body(optional=True)
    if not isinstance(overrides.get("config") or {}, dict):
        raise ApiError("'config' must be an object of the fields to change.", 422)
    payload = {"name": overrides.get("name") or f"{source.name} (copy)", "recipe": source.recipe,
               **_clone_datasets(source, overrides), "config": {**source.config, **(overrides.get("config") or {})},
               "webhook_url": overrides.get("webhook_url", source.webhook_url)}
    job, created, report = create_job(payload)  # a double click's second copy is the first (200, created false)
    return jsonify({"job": job.public(), "created": created, "warnings": report["warnings"]}), (201 if created else 200)


@bp.get("/api/jobs/<job_id>/log")
def job_log(job_id):
    job = load_job(job_id)
    path = workspace().jobs / job.id / "log.txt"
    offset = int_arg("offset", 0, -1, 2**62, unit=" of bytes")
    try:
        size = path.stat().st_size
    except OSError:
        return jsonify({"text": "", "offset": 0, "size": 0})
    if offset < 0 or offset > size:  # -1: only the tail; beyond the end: the log was replaced
        offset = max(0, size - LOG_TAIL)
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(min(LOG_CHUNK, size - offset))
    return jsonify({"text": data.decode("utf-8", "replace"), "offset": offset + len(data), "size": size})


@bp.get("/api/jobs/<job_id>/metrics")
def job_metrics(job_id):
    """The step losses after `after`, and every evaluation (a few dozen lines: sent whole, so one measured
    just after the page read its step is never missed)."""
    job = load_job(job_id)
    after = request.args.get("after", default=-1, type=int)
    job_dir = workspace().jobs / job.id
    return jsonify({"points": _json_lines(job_dir / "metrics.jsonl", after), "evals": _json_lines(job_dir / EVAL_FILE),
                    "total_steps": job.total_steps})


def _json_lines(path: Path, after: int = -1) -> list[dict]:
    """The complete lines of a metrics file whose step is above `after` (a line being written is left out). A NaN or
    infinite figure (an evaluation of a diverging run: Python writes it as NaN) comes back as null: the browser's
    JSON.parse refuses NaN, and one such line would stop the page's loss chart for good."""
    points = []
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # being written
                try:
                    point = json.loads(line, parse_constant=lambda _name: None)
                    if isinstance(point, dict) and int(point.get("step", -1)) > after:
                        points.append(point)
                except (ValueError, TypeError):
                    continue
    except OSError:
        pass
    return points


@bp.get("/api/jobs/<job_id>/samples")
def job_samples(job_id):
    job = load_job(job_id)
    groups = library.samples(workspace().jobs / job.id)
    for group in groups:
        group["urls"] = [f"/api/jobs/{job.id}/files/{path}" for path in group["images"]]
        group["pairs"] = library.pair_urls(job.id, group["pairs"])  # per prompt: base, lora, lora_no_trigger
    # the latest preview step's mean share of the LoRA's change without the trigger word (trainer.leak), and the
    # prompts whose previews can be watched in turn (trainer.timelapse)
    return jsonify({"samples": groups, "leak": library.leak_summary(groups),
                    "timelapses": [{"index": i, "url": f"/api/jobs/{job.id}/timelapse/{i}"}
                                   for i in prompts_with_timelapse(groups)]})


@bp.get("/api/jobs/<job_id>/files/<path:name>")
def job_file(job_id, name):
    job = load_job(job_id)
    return job_files.send_job_file(job, workspace().jobs / job.id, name)
