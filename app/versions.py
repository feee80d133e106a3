"""Export versions: what each holds, which jobs still need it, and removing the ones nothing needs."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app import context
from app.hub_push import KIND as PUSH
from studio import exports
from studio.web import ApiError
from trainer import trash as trainer_trash

bp = Blueprint("versions", __name__)


def _users(workspace) -> dict[str, list[dict]]:
    """Who still needs each version: jobs that can run or resume, and such jobs in the trainer's Recently deleted
    (restored, one would find its images gone)."""
    users = {version: [{"id": job.id, "name": _label(job), "status": job.status, "kind": job.kind} for job in jobs]
             for version, jobs in context.jobs().versions_in_use().items()}
    for version, deleted in trainer_trash.versions_held(workspace).items():
        users.setdefault(version, []).extend(deleted)
    return users


def _label(job) -> str:
    return f"publishing {job.name} to Hugging Face" if job.kind == PUSH else job.name


def _listing(dataset_id: str | None) -> dict:
    workspace = context.workspace()
    in_use = _users(workspace)
    versions = []
    for entry in exports.list_versions(workspace):
        if dataset_id and entry["source_dataset_id"] != dataset_id:
            continue
        jobs = in_use.get(entry["version"], [])
        entry["used_by"] = jobs
        entry["current"] = bool(entry["names"])
        entry["deletable"] = not jobs and not entry["names"]
        versions.append(entry)
    # what deleting every deletable one gives back: their images are mostly hard links of the dataset's own
    reclaimable = exports.freed_by_deleting(workspace, [v["version"] for v in versions if v["deletable"]])
    return {"versions": versions, "reclaimable_bytes": reclaimable}


@bp.get("/api/exports")
def list_versions():
    """Every export version (or those of `?dataset=<id>`), newest first, with size and users."""
    dataset_id = request.args.get("dataset")
    if dataset_id is not None:
        context.dataset(dataset_id)  # 404 for an unknown dataset
    return jsonify(_listing(dataset_id))


@bp.delete("/api/exports/<version>")
def delete_version(version: str):
    workspace = context.workspace()
    needed = _users(workspace).get(exports.check_version(version), [])
    pushing = [job["id"] for job in needed if job.get("kind") == PUSH]
    if pushing:
        raise ApiError(f"Version {version} is being published to Hugging Face ({pushing[0]}): delete it when that has "
                       "finished.", 409)
    users = [job["id"] for job in needed]
    try:
        freed = exports.delete_version(workspace, version, users)
    except exports.ExportMissing as exc:
        raise ApiError(str(exc), 404) from None
    except exports.ExportInUse as exc:
        raise ApiError(str(exc), 409) from None
    return jsonify({"deleted": version, "freed_bytes": freed})
