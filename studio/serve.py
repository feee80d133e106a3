"""Start a studio web service under gunicorn (what `python -m <service>` and supervisord run)."""

from __future__ import annotations

import logging
import sys

from studio.settings import SettingsError, load_settings


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_gunicorn(app_uri: str, bind: str, workers: int = 1, threads: int = 8, timeout: int = 120,
                 graceful_timeout: int = 30) -> None:
    """Run gunicorn in this process on `app_uri` (e.g. 'app:create_app()')."""
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = [
        "gunicorn", app_uri,
        "--bind", bind,
        "--workers", str(workers),
        "--threads", str(threads),
        "--worker-class", "gthread",
        "--timeout", str(timeout),
        "--graceful-timeout", str(graceful_timeout),
        "--access-logfile", "-",
        "--error-logfile", "-",
        "--log-level", "info",
        "--config", "python:studio.gunicorn_hooks",  # a worker ends with its master
        "--no-control-socket",  # one path per user: the three services would take it from one another
    ]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()


def main_for(app_uri: str, port_attr: str, host_attr: str = "host", **gunicorn_options) -> None:
    """Validate settings (one clear sentence on error, exit 2), then serve `app_uri`."""
    configure_logging()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    host = getattr(settings, host_attr)
    port = getattr(settings, port_attr)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    run_gunicorn(app_uri, bind, **gunicorn_options)
