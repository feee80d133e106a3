"""Stopping a running import, and going on with one that did not finish (a pod restart, a stop, a failed download):

    POST /api/datasets/<id>/imports/<job>/stop     -> the import job, stopping (202); it ends "stopped" at its next
                                                      check (the next block of a download, the next file)
    POST /api/datasets/<id>/imports/<job>/resume   -> the new import job (202)

A stopped import keeps the images it had placed (recorded in the dataset) and removes its work files: a partial
download, what it had unpacked.

The import runs again from the same source (the link with its limit, the bucket prefix, or the upload's sessions,
which stay on disk until an import of them completes) and leaves out the images the dataset already has (the same
bytes), so what the first run placed is neither lost nor doubled. Images it had moved in without recording them
are recorded at start (adopt_interrupted), so the gallery and the export never miss them meanwhile.
"""

from __future__ import annotations

import logging
import threading

from flask import Blueprint, jsonify

from app import context
from app.importer import adopt_strays
from app.store import NotFound
from studio.jobs import ACTIVE, JobStateError

log = logging.getLogger(__name__)
bp = Blueprint("import_resume", __name__)
KINDS = ("import", "s3-import")
ENDED = ("interrupted", "stopped", "failed")


def _import_job(dataset_id: str, job_id: str, statuses: tuple, action: str):
    """(dataset, its import job) when the job is in one of `statuses`; otherwise why there is nothing to `action`."""
    dataset = context.dataset(dataset_id)
    job = context.dataset_job(dataset, job_id, KINDS)
    if job.status not in statuses:
        raise JobStateError(f"This import is {job.status}: there is nothing to {action}.")
    return dataset, job


@bp.post("/api/datasets/<dataset_id>/imports/<job_id>/stop")
def stop(dataset_id: str, job_id: str):
    _dataset, job = _import_job(dataset_id, job_id, tuple(ACTIVE), "stop")
    stopping = context.jobs().request_stop(job.id, reason="Stopping: the images imported so far stay.")
    return jsonify(stopping.public()), 202


@bp.post("/api/datasets/<dataset_id>/imports/<job_id>/resume")
def resume(dataset_id: str, job_id: str):
    dataset, job = _import_job(dataset_id, job_id, ENDED, "resume")
    source = (job.config or {}).get("source")
    if source == "url":
        from app.url_import import start_url_import

        again = start_url_import(dataset, job.config["url"], skip_known=True, limit=job.config.get("limit"),
                                 frames=job.config.get("frames"), spread=bool(job.config.get("spread")))
    elif source == "s3":
        from app.s3_import import start_s3_import

        again = start_s3_import(dataset, {**{k: job.config.get(k) for k in ("bucket", "prefix", "limit", "spread")},
                                          **(job.config.get("frames") or {})}, skip_known=True)
    elif source == "sessions":
        from app.uploads import import_from_sessions, session_exists

        if not all(session_exists(dataset, sid) for sid in job.config.get("sessions") or []):
            raise JobStateError("The uploaded files of this import are gone (an import of them finished, or they "
                                "expired): upload them again.")
        again = import_from_sessions(dataset, job.config["sessions"], skip_known=True,
                                     frames=job.config.get("frames"))
    else:
        raise JobStateError("This import cannot run again by itself (its files were sent in one request): "
                            "upload them again.")
    return jsonify(again.public()), 202


def adopt_interrupted(app, interrupted: list) -> None:
    """Records, in the background, the images the interrupted imports had placed but not yet recorded."""
    dataset_ids = sorted({job.dataset for job in interrupted if job.kind in KINDS and job.dataset})
    if not dataset_ids:
        return

    def adopt() -> None:
        with app.app_context():
            for dataset_id in dataset_ids:
                try:
                    adopt_strays(context.dataset(dataset_id), context.settings())
                except NotFound:
                    continue  # deleted since
                except Exception:  # the next import adopts them as well
                    log.exception("could not record the images an interrupted import left in %s", dataset_id)

    threading.Thread(target=adopt, name="adopt-strays", daemon=True).start()
