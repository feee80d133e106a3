"""Datasets: the index and gallery pages, and create / list / read / rename / delete."""

from __future__ import annotations

from contextlib import nullcontext

from flask import Blueprint, jsonify, render_template

from app import context, express, imaging, trash
from app.frame_choice import page_defaults
from app.store import NameTaken, dataset_lock, summary, validate_name, validate_trigger
from app.video_frames import VIDEO_EXTENSIONS
from studio.web import ApiError, json_body

bp = Blueprint("datasets", __name__)


@bp.get("/")
def index():
    return render_template("datasets_index.html")


@bp.get("/d/<dataset_id>")
def gallery(dataset_id: str):
    dataset = context.dataset(dataset_id)
    settings = context.settings()
    page = {
        "id": dataset.id,
        "chunk_bytes": settings.upload_chunk_mb * 2**20,
        "max_upload_bytes": settings.max_upload_mb * 2**20,
        "extensions": sorted(imaging.IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | {".zip", ".parquet", ".txt"}),
        "frames": page_defaults(settings),  # the frames taken from videos unless the upload says
    }
    return render_template("dataset.html", page=page, name=dataset.meta().get("name", dataset.id))


def detail(dataset) -> dict:
    info = summary(dataset)
    info["jobs"] = {kind: context.latest_job(dataset, kind) for kind in ("import", "caption", "export")}
    # the kinds of work on its way on it now (a bucket import, a push too): the index's Delete says what it stops
    info["running"] = sorted({job.kind for job in context.executor().running(dataset.id)})
    return info


@bp.get("/api/datasets")
def list_datasets():
    return jsonify({"datasets": [summary(d) for d in context.store().all()]})


@bp.post("/api/datasets")
def create_dataset():
    body = json_body()
    try:
        dataset = context.store().create(validate_name(body.get("name")), body.get("trigger_word") or "")
    except ValueError as exc:
        raise ApiError(str(exc), 422) from None
    return jsonify(detail(dataset)), 201  # its name may be a free one: "My cat 2"


def _taken(exc: NameTaken) -> ApiError:
    """409 for a name another dataset has, with a free one like it (the page offers "Use <free>")."""
    return ApiError(str(exc), 409, details=[{"field": "name", "free": exc.free}])


@bp.get("/api/datasets/<dataset_id>")
def get_dataset(dataset_id: str):
    return jsonify(detail(context.dataset(dataset_id)))


@bp.patch("/api/datasets/<dataset_id>")
def update_dataset(dataset_id: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    unknown = set(body) - {"name", "trigger_word", "cover"}
    if unknown:
        raise ApiError(f"Unknown field(s): {', '.join(sorted(unknown))}.", 422)
    # a rename holds the lock that creates and restores hold while they pick a name, so two tabs renaming two
    # datasets to one name at the same moment cannot both find it free (root first, as a restore takes them)
    with dataset_lock(context.store().root) if "name" in body else nullcontext(), dataset.lock():
        meta = dataset.meta()
        try:
            if "name" in body:
                before, meta["name"] = meta.get("name"), validate_name(body["name"])
                if meta["name"] != before:  # its own name, kept, is no rename (another may have it from before)
                    context.store().check_name_free(meta["name"], but=dataset.id)
            if "trigger_word" in body:
                meta["trigger_word"] = validate_trigger(body["trigger_word"])
        except NameTaken as exc:
            raise _taken(exc) from None
        except ValueError as exc:
            raise ApiError(str(exc), 422) from None
        if "cover" in body:
            if not isinstance(body["cover"], str) or body["cover"] not in meta["images"]:
                raise ApiError("The cover must be an image of this dataset.", 422)
            meta["cover"] = body["cover"]
        dataset.save_meta(meta)
    return jsonify(detail(dataset))


@bp.delete("/api/datasets/<dataset_id>")
def delete_dataset(dataset_id: str):
    dataset = context.dataset(dataset_id)
    express.dataset_deleted(dataset.id)
    for job in context.executor().running(dataset.id):
        context.jobs().request_stop(job.id, reason="Stopping: the dataset was deleted.")
    entry = trash.delete_dataset(context.store(), dataset)
    context.jobs().delete_dataset_jobs(dataset.id)
    return jsonify({"deleted": dataset_id, "trash": entry})
