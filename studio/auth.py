"""Password protection shared by every web service.

With STUDIO_PASSWORD unset the studio is open (pages show a banner saying so). With it set, every
route except the health check and the login page needs either `Authorization: Bearer <password>`
or the signed session cookie the login page sets. API clients get 401, browsers a redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from urllib.parse import urlparse

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request, session, url_for

PUBLIC_ENDPOINTS = {"health", "auth.login"}
MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0


class LoginLimiter:
    """Counts failed logins per client address; too many in the window are refused for a while."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S):
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        stamps = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = stamps
        return stamps

    def retry_after(self, key: str) -> int:
        """Seconds until `key` may try again; 0 when allowed now."""
        now = time.monotonic()
        with self._lock:
            stamps = self._recent(key, now)
            if len(stamps) < self.max_failures:
                return 0
            return max(1, int(self.window_s - (now - stamps[0])) + 1)

    def fail(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def password_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (hashing first makes the time independent of length too)."""
    return hmac.compare_digest(_digest(given or ""), _digest(expected))


def _session_token(app: Flask) -> str:
    """Changes when the password changes, so old cookies stop working."""
    password = app.config["STUDIO_SETTINGS"].password or ""
    return hmac.new(app.secret_key.encode("utf-8"), _digest(password), hashlib.sha256).hexdigest()


def _wants_json() -> bool:
    if request.path.startswith("/api/") or request.headers.get("Authorization"):
        return True
    if request.method not in {"GET", "HEAD"}:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def is_authenticated() -> bool:
    settings = current_app.config["STUDIO_SETTINGS"]
    if not settings.auth_enabled:
        return True
    token = _bearer()
    if token is not None:
        return password_matches(token, settings.password)
    stored = session.get("auth")
    return isinstance(stored, str) and hmac.compare_digest(stored, _session_token(current_app))


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def require_login():
    if request.endpoint in PUBLIC_ENDPOINTS or is_authenticated():
        return None
    if _wants_json():
        response = jsonify({"error": "Authentication required: send 'Authorization: Bearer <password>'.",
                            "details": []})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="studio"'
        return response
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def create_auth_blueprint(limiter: LoginLimiter) -> Blueprint:
    bp = Blueprint("auth", __name__, template_folder="templates")

    @bp.route("/login", methods=["GET", "POST"])
    def login():
        settings = current_app.config["STUDIO_SETTINGS"]
        next_url = _safe_next(request.values.get("next"))
        if not settings.auth_enabled:
            return redirect(next_url)
        if request.method == "GET":
            return render_template("studio_login.html", next_url=next_url, error=None)
        client = request.remote_addr or "unknown"
        wait = limiter.retry_after(client)
        if wait:
            page = render_template("studio_login.html", next_url=next_url,
                                   error=f"Too many failed attempts: try again in {wait} s.")
            return page, 429, {"Retry-After": str(wait)}
        if not password_matches(request.form.get("password"), settings.password):
            limiter.fail(client)
            page = render_template("studio_login.html", next_url=next_url, error="Wrong password.")
            return page, 401
        limiter.reset(client)
        session.clear()
        session["auth"] = _session_token(current_app)
        session.permanent = True
        return redirect(next_url)

    @bp.route("/logout", methods=["GET", "POST"])
    def logout():
        session.clear()
        return redirect(url_for("auth.login"))

    return bp
