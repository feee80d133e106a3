"""Password protection shared by every web service.

With STUDIO_PASSWORD unset the studio is open (pages show a banner saying so). With it set, every
route except the health check, the favicon, login and logout needs either `Authorization: Bearer <password>`
or the signed session cookie the login page sets. API clients get 401, browsers a redirect.
Every password try (the login form and Bearer; Basic is not accepted) goes through one limiter
(`studio.login_limiter`): too many wrong ones answer 429 with Retry-After. A browser that has logged
in before carries a signed device cookie and is counted on its own; everyone else is counted per
client address, so behind a shared proxy a stranger's guessing cannot lock out returning users (the
"device cookie" defence against lockout attacks).
How the request proved itself is kept in `g.studio_auth` ("open", "bearer" or "cookie") for the
origin check (`studio.origin_guard`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import unicodedata
from collections.abc import Callable
from urllib.parse import urlparse

from flask import Blueprint, Flask, current_app, g, jsonify, redirect, render_template, request, session, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from studio.login_limiter import LoginLimiter, StateStore

log = logging.getLogger(__name__)
# The favicon is public like /health: browsers fetch it without credentials, and it is the same for everyone.
PUBLIC_ENDPOINTS = {"health", "favicon", "auth.login", "auth.logout"}
LIMITER_EXTENSION = "studio_login_limiter"
TOO_MANY = "Too many wrong passwords from this {source}: try again in {wait} s."
DEVICE_COOKIE = "studio_device"
DEVICE_MAX_AGE_S = 365 * 24 * 3600
SIGNED_OUT_EXTENSION = "studio_signed_out"
SIGNED_OUT_SCHEMA = "CREATE TABLE IF NOT EXISTS signed_out (sid TEXT PRIMARY KEY, until REAL NOT NULL)"


class SignedOutSessions(StateStore):
    """Login sessions ended by "Log out", shared by the three services. The session cookie is signed, not stored:
    without this list a copy of it taken before the logout (a shared computer's profile, a proxy log, malware) would
    work until it expired. Each entry is kept as long as the cookie could live."""

    SCHEMA = (SIGNED_OUT_SCHEMA,)
    WHAT = "the signed-out sessions' store"

    def add(self, sid: str, keep_s: float) -> None:
        now = time.time()

        def work(db):
            db.execute("DELETE FROM signed_out WHERE until < ?", (now,))
            db.execute("INSERT OR REPLACE INTO signed_out (sid, until) VALUES (?, ?)", (sid, now + keep_s))
        self._run(work)

    def __contains__(self, sid: str) -> bool:
        found = self._run(lambda db: db.execute("SELECT 1 FROM signed_out WHERE sid = ?", (sid,)).fetchone(),
                          write=False)
        return found is not None


def signed_out() -> SignedOutSessions:
    store = current_app.extensions.get(SIGNED_OUT_EXTENSION)
    if store is None:
        store = current_app.extensions.setdefault(
            SIGNED_OUT_EXTENSION, SignedOutSessions(current_app.config["STUDIO_WORKSPACE"].state / "signed-out.db"))
    return store


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def session_watch() -> Callable[[], bool]:
    """For a response that lasts (a live stream), called while its request is handled: a check, usable to its end,
    that the login it came with was not logged out since (always true where nothing can be logged out: an open
    studio, a bearer token)."""
    if not current_app.config["STUDIO_SETTINGS"].auth_enabled or not _cookie_valid():
        return lambda: True
    sid, store = session["sid"], signed_out()
    return lambda: sid not in store


def normalize_password(value: str | None) -> str:
    """A password as typed or sent, in the form STUDIO_PASSWORD is kept in: without the spaces around it (the
    setting is read stripped) and in Unicode NFC (a macOS file name or keyboard can give the decomposed form of
    the same letters)."""
    return unicodedata.normalize("NFC", (value or "").strip())


def password_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (hashing first makes the time independent of length too)."""
    return hmac.compare_digest(_digest(normalize_password(given)), _digest(normalize_password(expected)))


def bearer_header(password: str) -> str:
    """The `Authorization` value a service sends another with the studio's password. HTTP headers travel as bytes
    that Python's clients write in latin-1 (and refuse other letters with UnicodeEncodeError): the password's UTF-8
    bytes are handed over as latin-1 text, so they go out as UTF-8, as curl sends them (see `_bearer`)."""
    return "Bearer " + password.encode("utf-8").decode("latin-1")


def _session_token(app: Flask) -> str:
    """Changes when the password changes, so old cookies stop working."""
    password = app.config["STUDIO_SETTINGS"].password or ""
    return hmac.new(app.secret_key.encode("utf-8"), _digest(password), hashlib.sha256).hexdigest()


def _wants_json() -> bool:
    if request.path.startswith("/api/") or request.headers.get("Authorization"):
        return True
    if request.method not in {"GET", "HEAD"}:
        return True
    # an API service (the caption service) answers JSON unless a browser asks for a page by name: curl's and
    # scripts' "Accept: */*" gets a 401 it can read, not a redirect to a login form
    order = ["application/json", "text/html"] if current_app.config.get("STUDIO_API_ONLY") else \
        ["text/html", "application/json"]
    return request.accept_mimetypes.best_match(order) == "application/json"


def _bearer() -> str | None:
    """The password in `Authorization: Bearer`. The server reads header bytes as latin-1 (WSGI); curl, browsers'
    fetch() and `bearer_header` send a password's letters as UTF-8, so the bytes are decoded again as UTF-8 (a
    header that is not UTF-8 is taken as latin-1, as it came)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        token = token.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return token.strip()


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def limiter() -> LoginLimiter:
    return current_app.extensions[LIMITER_EXTENSION]


def client_address() -> str:
    """The TCP peer. Forwarded-for headers are not used: any client can write them (see the README)."""
    return request.remote_addr or "unknown"


def came_over_https() -> bool:
    """Whether the browser used https: to this service itself, or to a proxy that says so (RunPod's sets
    X-Forwarded-Proto). A client that writes the header only makes its own cookies Secure."""
    proto = (request.headers.get("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
    return request.is_secure or proto == "https"


def cookies_secure() -> bool:
    """Login cookies are Secure when the page came over https, so a browser never sends them over plain http (a
    network attacker's http:// link to the same host would otherwise read them)."""
    return bool(current_app.config.get("SESSION_COOKIE_SECURE")) or came_over_https()


def _devices() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="studio-device")


def _device_id() -> str | None:
    """The id in a valid device cookie: signed by this studio, for the current password (a changed
    password makes every browser a stranger again until it logs in)."""
    try:
        device, token = _devices().loads(request.cookies.get(DEVICE_COOKIE, ""))
    except (BadSignature, ValueError, TypeError):
        return None
    if not isinstance(device, str) or not isinstance(token, str):
        return None
    return device if hmac.compare_digest(token, _session_token(current_app)[:32]) else None


def limiter_key() -> str:
    """Whose budget a password try counts against: this browser's, when it logged in before, else the
    client address."""
    device = _device_id()
    return f"device:{device}" if device else client_address()


def _remember_device(response) -> None:
    device = _device_id() or secrets.token_urlsafe(16)
    value = _devices().dumps([device, _session_token(current_app)[:32]])
    response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_MAX_AGE_S, httponly=True, samesite="Lax",
                        secure=cookies_secure())


def _cookie_valid() -> bool:
    """A session cookie from a login with the current password that has not been logged out."""
    stored, sid = session.get("auth"), session.get("sid")
    if not isinstance(stored, str) or not isinstance(sid, str):
        return False
    return hmac.compare_digest(stored, _session_token(current_app)) and sid not in signed_out()


def _too_many_text(client: str, wait: int) -> str:
    return TOO_MANY.format(source="browser" if client.startswith("device:") else "address", wait=wait)


def _too_many(client: str, wait: int):
    response = jsonify({"error": _too_many_text(client, wait), "details": []})
    response.status_code = 429
    response.headers["Retry-After"] = str(wait)
    return response


def _check_bearer(token: str, password: str):
    """None when the Bearer password is right; otherwise the 429 or 401 answer (a wrong one is counted)."""
    client = limiter_key()
    right = password_matches(token, password)
    wait = limiter().retry_after(client) if right else limiter().fail(client)
    if wait:
        return _too_many(client, wait)
    if right:
        g.studio_auth = "bearer"
        return None
    return _unauthorized("Wrong password in 'Authorization: Bearer <password>'.")


def _unauthorized(message: str):
    response = jsonify({"error": message, "details": []})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="studio"'
    return response


def require_login():
    """Before every request: decide how it is authenticated (g.studio_auth), or answer 401/429/redirect."""
    settings = current_app.config["STUDIO_SETTINGS"]
    g.studio_auth = None
    if not settings.auth_enabled:
        g.studio_auth = "open"
        return None
    if request.endpoint == "health" and _bearer() is not None:
        # Public, but a client that sends the password (the dataset manager asking the caption service) is told
        # what its users are (a failed model's folders); a wrong one is counted like any other.
        return _check_bearer(_bearer(), settings.password)
    if request.endpoint in PUBLIC_ENDPOINTS:
        # No password is tried here. Logging out acts on the cookie, so the origin check must know of it;
        # logging in carries its own credential (the form's password, counted by the limiter).
        g.studio_auth = "cookie" if request.endpoint != "auth.login" and _cookie_valid() else None
        return None
    token = _bearer()
    if token is not None:
        return _check_bearer(token, settings.password)
    if _cookie_valid():
        g.studio_auth = "cookie"
        return None
    if _wants_json():
        return _unauthorized("Authentication required: send 'Authorization: Bearer <password>'.")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _prefers_html() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "text/html"


def create_auth_blueprint() -> Blueprint:
    bp = Blueprint("auth", __name__, template_folder="templates")

    @bp.route("/login", methods=["GET", "POST"])
    def login():
        settings = current_app.config["STUDIO_SETTINGS"]
        next_url = _safe_next(request.values.get("next"))
        if not settings.auth_enabled:
            return redirect(next_url)
        if request.method == "GET":
            return render_template("studio_login.html", next_url=next_url, error=None)
        client = limiter_key()
        right = password_matches(request.form.get("password"), settings.password)
        wait = limiter().retry_after(client) if right else limiter().fail(client)
        if wait:
            if not _prefers_html():
                return _too_many(client, wait)
            page = render_template("studio_login.html", next_url=next_url, error=_too_many_text(client, wait))
            return page, 429, {"Retry-After": str(wait)}
        if not right:
            page = render_template("studio_login.html", next_url=next_url, error="Wrong password.")
            return page, 401
        limiter().reset(client)
        session.clear()
        session["auth"] = _session_token(current_app)
        session["sid"] = secrets.token_urlsafe(16)  # what "Log out" ends for every copy of this cookie
        session.permanent = True
        response = redirect(next_url)
        _remember_device(response)
        return response

    @bp.route("/logout", methods=["GET", "POST"])
    def logout():
        """POST logs out (the pages' button); GET only shows that button, so a link or <img> cannot."""
        if not current_app.config["STUDIO_SETTINGS"].auth_enabled:
            return redirect("/")
        if request.method == "GET":
            return render_template("studio_logout.html", signed_in=_cookie_valid())
        if _cookie_valid():
            signed_out().add(session["sid"], current_app.permanent_session_lifetime.total_seconds())
        session.clear()
        return redirect(url_for("auth.login"))

    return bp
