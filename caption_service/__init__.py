"""Caption service: Qwen2.5-VL through llama-cpp-python, image bytes in, caption out (port 11435)."""

from __future__ import annotations

import logging
import re

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from caption_service.model_manager import ModelManager
from caption_service.views import bp as captions_bp
from studio.settings import Settings
from studio.web import create_base_app, error_response

log = logging.getLogger(__name__)

ROUTES = "GET /health, POST /caption, POST /unload, POST /load"
PATH = re.compile(r"((?:/[^\s'\"/:]+)+)/([^\s'\"/:]+)")  # an absolute path: its folders, its file name
MAX_BODY_MB = 64  # a 45 MB photo in base64; anything bigger is not a caption request


def public_reason(reason: str, manager: ModelManager) -> str:
    """`reason` with every folder left out: the model files by their names (their folders may hold spaces, which
    PATH stops at), then any other absolute path."""
    for path in (manager.paths.caption_model, manager.paths.caption_mmproj):
        reason = reason.replace(str(path), path.name)
    return PATH.sub(lambda m: m.group(2), reason)


def create_app(settings: Settings | None = None) -> Flask:
    app = create_base_app(__name__, service="caption", title="Caption service", settings=settings)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_MB * 1024 * 1024
    # A base64 image in a multipart text field ('image') is held in memory: Flask's 500 KB default for such fields
    # refused a 400 KB photo with "larger than 64 MB".
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BODY_MB * 1024 * 1024
    app.config["STUDIO_API_ONLY"] = True  # studio.auth: a request without a password gets a JSON 401
    app.config["STUDIO_JSON_MAX_BYTES"] = MAX_BODY_MB * 1024 * 1024  # base64 images travel in JSON
    manager = ModelManager(app.config["STUDIO_SETTINGS"])
    app.extensions["caption_models"] = manager
    app.register_blueprint(captions_bp)

    @app.errorhandler(413)
    def too_large(exc):
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(f"The request is larger than {limit / 1048576:g} MB: send a smaller image.", 413)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # An API service: curl and scripts send "Accept: */*", and must get JSON, not an HTML error page.
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            allowed = " or ".join(m for m in exc.valid_methods if m not in ("HEAD", "OPTIONS"))
            return error_response(f"{request.method} is not allowed on {request.path}: use {allowed}.", 405)
        if isinstance(exc, NotFound):
            return error_response(f"{request.path} is not a route of the caption service: {ROUTES}.", 404)
        return error_response(exc.description or exc.name, exc.code or 500)

    @app.get("/health")
    def health():
        # Always 200: callers read the status field; a broken manager must still give an answer.
        manager = app.extensions["caption_models"]
        try:
            body = manager.health().to_dict()
        except Exception as exc:
            log.exception("health check failed")
            body = {"status": "error", "reason": f"Health check failed ({type(exc).__name__}).",
                    "model": manager.paths.caption_model.name, "mmproj": manager.paths.caption_mmproj.name,
                    "device": manager.device, "load_seconds": None, "queue": 0}
        if g.get("studio_auth") is None and body.get("reason"):  # public: the pod's folders only to its users
            body["reason"] = public_reason(body["reason"], manager)
        return jsonify(body)

    manager.start()  # loads in the background: creating the app never blocks on the model
    return app
