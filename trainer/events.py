"""Server-sent events that survive RunPod's proxy.

Cloudflare cuts any request at 100 s and may buffer streams, so each stream sends
`Cache-Control: no-cache, no-transform` and `X-Accel-Buffering: no`, a comment heartbeat every
10 s, and ends by itself after about 75 s with a `retry` hint; EventSource then reconnects. Pages
fall back to plain polling when streams keep failing.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

from flask import Blueprint, Response, current_app, request, stream_with_context

from studio.auth import session_watch
from studio.jobs import ACTIVE
from trainer.jobs_api import job_detail, keep_states_honest, load_job, price, queue_schedule, store

bp = Blueprint("events", __name__)
STREAM_MAX_S = 75.0
HEARTBEAT_S = 10.0
CHECK_EVERY_S = 1.0
SIGNED_OUT_CHECK_S = 3.0
_shutting_down = threading.Event()


def end_streams_on_shutdown() -> None:
    """Under gunicorn, end open streams when the worker is told to stop, so a restart never waits on them.

    gunicorn installs its SIGTERM/SIGQUIT handlers before it loads the app; this wraps them.
    """
    if "gunicorn" not in sys.modules or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(sig, frame, previous=previous):
            _shutting_down.set()
            previous(sig, frame)

        signal.signal(signum, handler)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _stream(snapshot, version) -> Response:
    max_s = min(STREAM_MAX_S, request.args.get("max_s", default=STREAM_MAX_S, type=float))
    app = current_app._get_current_object()
    signed_in = session_watch()  # "Log out" in another tab ends this stream too, within SIGNED_OUT_CHECK_S

    def generate():
        started = time.monotonic()
        last_sent, last_check = started, started
        seen = None
        yield "retry: 1500\n\n"
        while time.monotonic() - started < max_s and not _shutting_down.is_set():
            if time.monotonic() - last_check >= SIGNED_OUT_CHECK_S:
                last_check = time.monotonic()
                if not signed_in():
                    yield _event("bye", {"reconnect": False, "signed_out": True})  # a reconnect is refused anyway
                    return
            with app.app_context():
                current = version()
                if current != seen:
                    seen = current
                    name, data = snapshot()
                    yield _event(name, data)
                    last_sent = time.monotonic()
            if time.monotonic() - last_sent >= HEARTBEAT_S:
                yield f": ping {int(time.time())}\n\n"
                last_sent = time.monotonic()
            time.sleep(CHECK_EVERY_S)
        yield _event("bye", {"reconnect": True})

    response = Response(stream_with_context(generate()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-transform"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Connection"] = "keep-alive"
    return response


@bp.get("/api/events")
def all_events():
    def snapshot():
        keep_states_honest()
        jobs = store().list(kind="train", limit=50)
        shown = {job.id for job in jobs}  # and every job waiting or running, however old: a resumed one keeps its
        jobs += [job for job in store().list(ACTIVE, kind="train", limit=10_000) if job.id not in shown]  # place
        return "jobs", {"jobs": [job.public() for job in jobs], "workers": store().workers(),
                        "schedule": queue_schedule(), "price": price()}

    return _stream(snapshot, dashboard_version)


def dashboard_version() -> tuple:
    """What the dashboard's stream watches: the training jobs, and the workers (one that died while waiting for
    its models changes no job, but the page's "worker offline" box and the queue's times must follow)."""
    return store().version("train"), tuple((w["pid"], w["state"], w.get("job_id")) for w in store().workers())


@bp.get("/api/jobs/<job_id>/events")
def job_events(job_id):
    job = load_job(job_id)

    def version():
        found = store().find(job.id)
        return found.updated_at if found else None

    def snapshot():
        found = store().find(job.id)
        if found is None:
            return "deleted", {"id": job.id}
        return "job", job_detail(found)

    return _stream(snapshot, version)
