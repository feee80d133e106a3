"""Trainer: Z-Image-Turbo LoRA jobs, queue, worker, live progress (port 8675)."""

from __future__ import annotations

from flask import Flask, jsonify

from studio.settings import Settings
from studio.web import create_base_app, error_response


def create_app(settings: Settings | None = None) -> Flask:
    from app.executor import JobExecutor
    from studio.jobs import JobNotFound, JobStateError
    from studio.pod_price import PodPrice
    from studio.upgrade import open_job_store
    from trainer import (
        bundle,
        catalog_api,
        events,
        hub_publish,
        jobs_api,
        library_comfyui,
        library_convert,
        library_edit,
        library_tools_api,
        library_upload,
        lora_import,
        names,
        pages,
        pod_api,
        renders_api,
        storage,
        timelapse,
        trash,
        variants,
    )
    from trainer.webhooks import dispatcher_for

    app = create_base_app(__name__, service="trainer", title="Trainer", settings=settings)
    settings = app.config["STUDIO_SETTINGS"]
    app.extensions["job_store"] = open_job_store(app.config["STUDIO_WORKSPACE"])
    app.extensions["trainer_webhooks"] = dispatcher_for(settings)
    app.extensions["pod_price"] = PodPrice(settings)
    # LoRAs added from a link download in threads of this process; one cut short by a restart ends here
    app.extensions["lora_imports"] = JobExecutor(app.extensions["job_store"], max_parallel=2)
    app.extensions["job_store"].interrupt_orphans((lora_import.KIND,))
    lora_import.sweep_incoming(app.config["STUDIO_WORKSPACE"].loras)

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "service": "trainer"})

    @app.errorhandler(JobNotFound)
    def job_not_found(exc):
        return error_response(str(exc), 404)

    @app.errorhandler(JobStateError)
    def job_state(exc):
        return error_response(str(exc), 409)

    for module in (pages, jobs_api, renders_api, catalog_api, library_tools_api, events, names, storage, bundle,
                   variants, hub_publish, pod_api, timelapse, lora_import, library_upload, library_edit,
                   library_convert, library_comfyui, trash):
        app.register_blueprint(module.bp)
    events.end_streams_on_shutdown()
    return app
