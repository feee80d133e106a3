"""Files being downloaded from the pod (a LoRA, a checkpoint, a dataset's or a job's ZIP), so that the pod is never
stopped in the middle of one: not by itself once the queue is done (trainer.worker), not by the dashboard's Stop
button (trainer.pod_api).

Every response sent as an attachment, or of DOWNLOAD_MIN_BYTES or more, holds a marker file in the workspace's state
folder while it streams (across the three services' processes); when the response closes (sent whole, or the browser
went away), the marker records that moment, so the pod's minute of grace counts from the end of the last download too.
A marker of a process that is gone (a killed gunicorn worker) is worth nothing; ended ones are swept after KEEP_S.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from flask import current_app, request
from werkzeug.http import parse_options_header

from studio.atomic import atomic_write_json, read_json
from studio.processes import machine, process_token, token_alive, token_machine

log = logging.getLogger(__name__)
FOLDER = "downloads"  # under the workspace's state folder
DOWNLOAD_MIN_BYTES = 16 << 20  # an inline file this big is a download too (a LoRA opened in the browser's tab)
KEEP_S = 600.0  # an ended download's marker is kept this long (its end still counts), then swept
MAX_S = 24 * 3600.0  # a marker older than this counts for nothing, whatever its process (a stuck connection)


def folder(state: Path) -> Path:
    return Path(state) / FOLDER


def is_download(response) -> bool:
    disposition = response.headers.get("Content-Disposition", "")
    return (request.method == "GET" and response.status_code in (200, 206)
            and (disposition.startswith("attachment") or (response.content_length or 0) >= DOWNLOAD_MIN_BYTES))


def hold(response):
    """Flask after_request: a download holds its marker until its response closes."""
    if not is_download(response):
        return response
    marker = folder(current_app.config["STUDIO_WORKSPACE"].state) / f"{os.getpid()}-{secrets.token_hex(6)}.json"
    name = _name(response)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, {"token": process_token(), "name": name, "started_at": time.time()})
    except OSError as exc:  # a full or read-only disk never stops the download itself
        log.warning("could not note the download of %s: %s", name, exc)
        return response
    if response.is_sequence:
        response.call_on_close(lambda: _ended(marker))
    else:  # a file (send_file passes it through: the response's own close is never called) or a stream
        response.response = _Watched(response.response, lambda: _ended(marker))
    return response


class _Watched:
    """The body of a download, which notes its end when the server closes it (sent whole, or the browser went)."""

    def __init__(self, body, on_close):
        self.body, self.on_close = body, on_close

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close()


def _name(response) -> str:
    name = parse_options_header(response.headers.get("Content-Disposition", ""))[1].get("filename")  # the UTF-8 one
    return (name or request.path.rsplit("/", 1)[-1] or "a file")[:200]


def _ended(marker: Path) -> None:
    try:
        info = read_json(marker, None)
        if isinstance(info, dict):
            atomic_write_json(marker, {**info, "ended_at": time.time()})
    except OSError:
        marker.unlink(missing_ok=True)


def under_way(state: Path, now: float | None = None) -> tuple[list[str], float | None]:
    """(names of the files being downloaded now, when the last download ended or None); stale markers are swept."""
    now = time.time() if now is None else now
    streaming, last_end = [], None
    for marker in sorted(folder(state).glob("*.json")) if folder(state).is_dir() else ():
        info = read_json(marker, None)
        if not isinstance(info, dict):
            continue  # being written: the next look sees it
        ended, started = info.get("ended_at"), info.get("started_at")
        if not isinstance(started, int | float) or now - started > MAX_S or (
                isinstance(ended, int | float) and now - ended > KEEP_S):
            marker.unlink(missing_ok=True)
        elif token_machine(info.get("token")) not in (None, machine()):
            continue  # another pod's on a shared volume (studio.host_claim): stopping this one does not cut it
        elif isinstance(ended, int | float):
            last_end = max(last_end or 0.0, ended)
        elif token_alive(info.get("token")):
            streaming.append(str(info.get("name") or "a file"))
        else:  # its process was killed mid-download: it ended then, as far as anyone can tell
            marker.unlink(missing_ok=True)
    return streaming, last_end


def sentence(names: list[str]) -> str | None:
    """Why the pod must not stop now, or None."""
    if not names:
        return None
    if len(names) == 1:
        return f"{names[0]} is still being downloaded: let it finish first."
    return f"{len(names)} files are still being downloaded ({', '.join(names[:3])}): let them finish first."
