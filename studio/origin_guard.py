"""Changes made with the login cookie are accepted only from the studio's own pages.

Browsers send the session cookie to every port of the host (and SameSite=Lax treats the pod's other
ports, and on RunPod its other `*-PORT.proxy.runpod.net` names, as the same site), so a page served by
ComfyUI on 8188 or any other tool on the pod could otherwise post to the studio with the user's cookie.

Every POST, PUT, PATCH and DELETE passes this check, whether a password is set or not:
- `Authorization: Bearer <right password>`: accepted (a browser never adds that header by itself).
- `Origin` present: accepted only when it is one of the studio's own origins (below); `null` is refused.
- no `Origin` but `Sec-Fetch-Site`: `same-origin` and `none` accepted, `same-site`/`cross-site` refused.
- neither header (curl, scripts, the services calling each other): accepted unless the request is
  authenticated by the session cookie; a cookie change without them is refused, since every current
  browser sends `Origin` on such requests and API clients use Bearer.

The studio's own origins: the request's own (host and port as the browser addressed it: `Host`, or
`X-Forwarded-Host`/`X-Forwarded-Proto` set by a proxy; a page cannot set these on a victim's request),
and the same host on the other web ports of the studio (datasets and trainer), including RunPod's proxy form `https://<pod>-<port>.proxy.runpod.net`
for those ports only. The caption service serves no pages, and no other port (ComfyUI, Jupyter, ...)
is trusted.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, request

from studio.settings import Settings

log = logging.getLogger(__name__)

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
DEFAULT_PORTS = {"http": 80, "https": 443}
# <pod>-<port>.proxy.runpod.net (and any proxy that names a port the same way)
PROXY_NAME = re.compile(r"^(?P<id>[a-z0-9]+)-(?P<port>\d{1,5})(?P<rest>\.[a-z0-9.-]+)$")
RUNPOD_PROXY_DOMAIN = ".proxy.runpod.net"

REFUSED_ORIGIN = ("Refused a change sent from {origin}, which is not one of the studio's own pages; "
                  "API clients send 'Authorization: Bearer <password>'.")
REFUSED_SITE = ("Refused a change sent from another site (Sec-Fetch-Site: {site}); "
                "API clients send 'Authorization: Bearer <password>'.")
REFUSED_COOKIE = ("Refused a change made with the login cookie but without an Origin header: use the studio's "
                  "pages in a current browser, or send 'Authorization: Bearer <password>'.")


def _first(value: str | None) -> str | None:
    """The first entry of a proxy header that may list several (`a, b`)."""
    if not value:
        return None
    return value.split(",")[0].strip() or None


def _host_and_port(netloc: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + netloc)
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header, or None when it is `null` or not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def studio_web_ports(settings: Settings) -> set[int]:
    return {settings.port, settings.trainer_port}


def is_studio_origin(origin: str, settings: Settings) -> bool:
    """Whether `origin` is this request's own origin or another web port of the studio on the same host."""
    parsed = _origin_parts(origin)
    if parsed is None:
        return False
    scheme, host, port = parsed
    ports = studio_web_ports(settings)
    forwarded_proto = (_first(request.headers.get("X-Forwarded-Proto")) or "").lower()
    for netloc in (_first(request.headers.get("X-Forwarded-Host")), request.host):
        own = _host_and_port(netloc) if netloc else None
        if own is None:
            continue
        own_host, own_port = own
        if own_port is not None:
            own_ports = {own_port}
        elif forwarded_proto in DEFAULT_PORTS:
            own_ports = {DEFAULT_PORTS[forwarded_proto]}
        else:  # no port in Host: the browser used its scheme's default, which the service cannot see
            own_ports = set(DEFAULT_PORTS.values())
        if host == own_host and (port in own_ports or port in ports):
            return True
        if _proxy_sibling(host, port, scheme, own_host, ports | {settings.qwen_port}, ports):
            return True
    pod = (settings.runpod_pod_id or "").lower()
    if pod and scheme == "https" and port == 443:
        return host in {f"{pod}-{p}{RUNPOD_PROXY_DOMAIN}" for p in ports}
    return False


def _proxy_sibling(host: str, port: int, scheme: str, own_host: str, own_ports: set[int], ports: set[int]) -> bool:
    """`<id>-<P>.<domain>` where the request itself went to `<id>-<N>.<domain>`, N and P studio ports."""
    own = PROXY_NAME.match(own_host)
    other = PROXY_NAME.match(host)
    if own is None or other is None or int(own["port"]) not in own_ports:
        return False
    return (other["id"] == own["id"] and other["rest"] == own["rest"] and int(other["port"]) in ports
            and port == DEFAULT_PORTS[scheme])


def refusal() -> str | None:
    """Why this request may not change anything (one sentence), or None when it may."""
    if request.method in SAFE_METHODS:
        return None
    auth = g.get("studio_auth")
    if auth == "bearer":
        return None
    origin = request.headers.get("Origin")
    if origin is not None:
        if is_studio_origin(origin, current_app.config["STUDIO_SETTINGS"]):
            return None
        return REFUSED_ORIGIN.format(origin=origin.strip()[:200] or "an empty origin")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.strip().lower() in {"same-origin", "none"}:
            return None
        return REFUSED_SITE.format(site=site.strip()[:40])
    if auth == "cookie":
        return REFUSED_COOKIE
    return None


def guard_origin():
    """Before every request (after auth): 403 for a change that did not come from the studio's own pages."""
    reason = refusal()
    if reason is None:
        return None
    log.warning("refused %s %s: Origin=%r Sec-Fetch-Site=%r", request.method, request.path,
                request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"))
    response = jsonify({"error": reason, "details": []})
    response.status_code = 403
    return response
