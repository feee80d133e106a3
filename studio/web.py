"""What every studio web service shares: settings on the app, secret key, auth, JSON errors, banners."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, has_request_context, jsonify, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from studio import downloads
from studio.atomic import atomic_write_text
from studio.auth import LIMITER_EXTENSION, cookies_secure, create_auth_blueprint, require_login
from studio.disk import disk_full_message, is_disk_full
from studio.favicon import favicon
from studio.json_limits import CONFIG_MAX_BYTES, DEFAULT_MAX_BYTES, JsonBodyError, read_json_request, request_json
from studio.login_limiter import LoginLimiter
from studio.origin_guard import guard_origin
from studio.settings import Settings, load_settings
from studio.workspace import UnsafePathError, Workspace

log = logging.getLogger(__name__)
STUDIO_DIR = Path(__file__).parent
COMFYUI_PORT = 8188  # where runpod_start.sh starts ComfyUI when INSTALL_COMFYUI=1 installed it


class ApiError(Exception):
    """Raise from a view to answer `{"error": message, "details": [...]}` with a status code."""

    def __init__(self, message: str, status: int = 400, details: list | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details or []
        self.headers = headers or {}


def error_response(message: str, status: int, details: list | None = None, headers: dict | None = None):
    response = jsonify({"error": message, "details": details or []})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def json_body(optional: bool = False) -> dict:
    """The request's JSON object (parsed under the size and depth limits), or 400/413 with a clear sentence.

    `optional`: a request without a JSON body gives `{}` instead of an error.
    """
    data = request_json(optional=optional)
    if data is None and optional:
        return {}
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object.", 400)
    return data


def json_flag(body: dict, key: str, default: bool | None = False) -> bool:
    """`body[key]` as true or false (`default` when absent or null; required with default None), or 422 naming
    the field."""
    value = body.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        message = f"'{key}' must be true or false."
        raise ApiError(message, 422, details=[{"field": key, "message": message}])
    return value


def int_arg(name: str, default: int, low: int, high: int, unit: str = "") -> int:
    """A whole-number query argument clamped to [low, high]; missing or empty gives `default`, junk a 400."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(low, min(high, int(raw)))
    except ValueError:
        raise ApiError(f"'{name}' must be a whole number{unit}.", 400) from None


class _SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the page came over https (studio.auth.cookies_secure)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and cookies_secure())


def security_headers(response):
    """After every request: no page of the studio may be framed (other `*.proxy.runpod.net` pods and the pod's
    other ports are the same site, so the login cookie goes with a frame: clickjacking), and no answer is
    sniffed as another type than it says."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _secret_key(workspace: Workspace) -> str:
    """One random key per workspace, kept private, shared by all services so one login serves all."""
    path = workspace.state / "secret_key"
    try:
        key = path.read_text("utf-8").strip()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    key = secrets.token_hex(32)
    try:
        if not path.exists():
            atomic_write_text(path, key, mode=0o600)
        return path.read_text("utf-8").strip()
    except OSError:
        log.warning("could not store the session key in %s; sessions end when the service restarts", path)
        return key


def _open_studio_banner(settings: Settings) -> list[dict]:
    if settings.auth_enabled:
        return []
    return [{"level": "warn", "text": "Open studio: anyone with this address can use it. "
                                      "Set STUDIO_PASSWORD to require a password."}]


def _demo_banner(settings: Settings) -> list[dict]:
    if not settings.demo:
        return []
    return [{"level": "info", "id": "demo-banner",
             "text": "Demo mode (no GPU or no model hub here): tiny random models stand in for the real ones. "
                     "Everything works end to end, but captions are gibberish and previews are noise."}]


POD_VOLUME = Path("/workspace")  # RunPod's persistent volume: only what is under it survives a pod stop


def volume_writable(volume: Path) -> bool:
    return os.access(volume, os.W_OK)


def _volume_banner(settings: Settings) -> list[dict]:
    """A pod whose volume cannot be written (read-only, not attached right) keeps everything on the container's disk
    (studio.settings.resolve_root, runpod_start.sh): said on every page, instead of losing the work at the stop."""
    if not POD_VOLUME.is_dir() or Path(settings.root).is_relative_to(POD_VOLUME) or volume_writable(POD_VOLUME):
        return []
    return [{"level": "error", "id": "volume-banner",
             "text": f"{POD_VOLUME} (the pod's volume) cannot be written, so everything is kept in {settings.root} "
                     "on the container's disk, which is lost when the pod stops: download what you make, check the "
                     "volume in RunPod (attached, not read-only), then restart the pod."}]


def _shared_volume_banner(workspace: Workspace) -> list[dict]:
    from studio.host_claim import sentence

    said = sentence(workspace.state)
    return [{"level": "error", "id": "shared-volume-banner", "text": said}] if said else []


def _model_banners(settings: Settings) -> list[dict]:
    try:
        from studio.model_status import banners
    except ImportError:
        return []
    try:
        return banners(settings)
    except Exception:  # a broken status file must never take a page down
        log.exception("could not read the model download status")
        return []


def create_base_app(import_name: str, service: str, title: str, settings: Settings | None = None,
                    template_folder: str = "templates", static_folder: str = "static") -> Flask:
    """A Flask app with the studio's settings, auth, error handling and shared templates."""
    settings = settings or load_settings()
    workspace = Workspace(settings.root).ensure()
    app = Flask(import_name, template_folder=template_folder, static_folder=static_folder)
    app.config.update(
        STUDIO_SETTINGS=settings,
        STUDIO_WORKSPACE=workspace,
        STUDIO_SERVICE=service,
        STUDIO_TITLE=title,
        SECRET_KEY=_secret_key(workspace),
        SESSION_COOKIE_NAME="studio_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(days=14),
        MAX_CONTENT_LENGTH=None,
        JSON_SORT_KEYS=False,
    )
    app.session_interface = _SessionInterface()
    app.after_request(security_headers)
    app.after_request(downloads.hold)  # a LoRA or a ZIP on its way out: the pod does not stop under it
    app.config[CONFIG_MAX_BYTES] = DEFAULT_MAX_BYTES  # a service that takes bigger JSON raises it
    # Shared templates (base page, login) live in the studio package.
    from jinja2 import ChoiceLoader, FileSystemLoader

    app.jinja_loader = ChoiceLoader([app.jinja_loader, FileSystemLoader(str(STUDIO_DIR / "templates"))])
    from flask import Blueprint

    app.register_blueprint(Blueprint("studio", __name__, static_folder=str(STUDIO_DIR / "static"),
                                     static_url_path="/_studio/static"))
    # One limiter file for all three services: a password guess on any of them counts for all.
    app.extensions[LIMITER_EXTENSION] = LoginLimiter(workspace.state / "login-failures.db")
    app.register_blueprint(create_auth_blueprint())
    app.add_url_rule("/favicon.ico", "favicon", favicon)  # public, see studio.auth.PUBLIC_ENDPOINTS
    from studio.model_banners import register as register_model_banners

    register_model_banners(app)  # the download banner, asked again by pages opened while the models download
    # In this order: who is asking, whether the change comes from the studio's own pages, then the body.
    app.before_request(require_login)
    app.before_request(guard_origin)
    app.before_request(read_json_request)

    @app.context_processor
    def studio_context():
        return {
            "studio_service": service,
            "studio_title": title,
            "studio_banners": (_open_studio_banner(settings) + _demo_banner(settings) + _volume_banner(settings)
                               + _shared_volume_banner(workspace) + _model_banners(settings)),
            "studio_ports": {"datasets": settings.port, "trainer": settings.trainer_port, "comfyui": COMFYUI_PORT},
            # installed in the workspace (INSTALL_COMFYUI=1), not only a loras folder a volume kept from elsewhere
            "studio_comfyui": (workspace.root / "ComfyUI" / "main.py").is_file(),
            "studio_auth": settings.auth_enabled,
        }

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return error_response(exc.message, exc.status, exc.details, exc.headers)

    @app.errorhandler(JsonBodyError)
    def handle_json_body(exc: JsonBodyError):
        return error_response(str(exc), exc.status)

    @app.errorhandler(UnsafePathError)
    def handle_unsafe_path(exc: UnsafePathError):
        return error_response(str(exc), 400)

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        if exc.code == 413:
            return error_response("The request is too large.", 413)
        if request.path.startswith("/api/") or not request.accept_mimetypes.accept_html:
            return error_response(exc.description or exc.name, exc.code or 500)
        return exc

    @app.errorhandler(OSError)
    def handle_os_error(exc: OSError):
        if is_disk_full(exc):
            log.warning("disk full on %s %s: %s", request.method, request.path, exc)
            return error_response(disk_full_message(workspace.root), 507)
        return handle_unexpected(exc)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(f"Internal error: {type(exc).__name__}. The service log has the details.", 500)

    return app
