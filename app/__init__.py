"""Dataset manager: upload, gallery, captions, bulk auto-caption, export (port 3000)."""

from __future__ import annotations

import logging
import shutil
import tempfile

from flask import Flask, Request, jsonify

from app.executor import DATASET_KINDS, JobExecutor
from app.store import Conflict, DatasetStore, NotFound
from studio.jobs import JobStateError
from studio.pod_price import PodPrice
from studio.settings import Settings
from studio.upgrade import open_job_store
from studio.web import create_base_app, error_response

log = logging.getLogger(__name__)


def _request_class(uploads_dir):
    class UploadRequest(Request):
        # multipart files over 500 KB spool to disk: keep them in the uploads folder, not /tmp
        def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
            uploads_dir.mkdir(parents=True, exist_ok=True)
            return tempfile.TemporaryFile("wb+", dir=uploads_dir, prefix=".multipart-")

    return UploadRequest


def create_app(settings: Settings | None = None) -> Flask:
    app = create_base_app(__name__, service="datasets", title="Datasets", settings=settings)
    workspace = app.config["STUDIO_WORKSPACE"]
    app.request_class = _request_class(workspace.uploads)
    app.extensions["dataset_store"] = DatasetStore(workspace)
    jobs = open_job_store(workspace)
    app.extensions["job_store"] = jobs
    app.extensions["job_executor"] = JobExecutor(jobs, max_parallel=2)
    app.extensions["pod_price"] = PodPrice(app.config["STUDIO_SETTINGS"])  # what an Express run cost
    for leftover in workspace.datasets.glob(".deleted-*"):
        # a dataset deleted while one of its jobs was still writing
        shutil.rmtree(leftover, ignore_errors=True)
    interrupted = jobs.interrupt_orphans(DATASET_KINDS)
    if interrupted:
        log.warning("%d background job(s) were interrupted by a restart", len(interrupted))

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "service": "datasets"})

    @app.errorhandler(NotFound)
    def handle_not_found(exc: NotFound):
        return error_response(str(exc), 404)

    @app.errorhandler(JobStateError)
    def handle_job_state(exc: JobStateError):
        return error_response(str(exc), 409)

    @app.errorhandler(Conflict)
    def handle_conflict(exc: Conflict):
        response = error_response(str(exc), 409)
        if exc.current:
            payload = response.get_json()
            payload["current"] = exc.current
            response = jsonify(payload)
            response.status_code = 409
        return response

    from app import (
        autocaption,
        caption_words,
        captions,
        datasets,
        export,
        express,
        express_abandoned,
        express_api,
        image_edits,
        images,
        trash,
        uploads,
        versions,
    )

    for module in (datasets, uploads, images, image_edits, trash, captions, caption_words, autocaption, export,
                   versions, express_api):
        app.register_blueprint(module.bp)
    from app import hub_push, import_resume, link_check, s3_import, url_import

    app.register_blueprint(s3_import.bp)
    app.register_blueprint(url_import.bp)
    app.register_blueprint(link_check.bp)
    app.register_blueprint(import_resume.bp)
    import_resume.adopt_interrupted(app, interrupted)
    app.register_blueprint(hub_push.bp)
    from app import measure

    measure.start(app.extensions["dataset_store"], app.config["STUDIO_SETTINGS"].max_image_pixels)
    app.extensions["express_driver"] = express.ExpressDriver(app)
    app.extensions["job_executor"].on_end.append(lambda _job_id: app.extensions["express_driver"].wake())
    with app.app_context():
        express_abandoned.close_abandoned()
    if jobs.count(("running",), kind="express", work=True):  # chains a restart interrupted go on by themselves
        app.extensions["express_driver"].ensure_running()
    return app
