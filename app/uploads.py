"""Uploads: small multipart uploads, and chunked resumable sessions for large files (studio.chunked).

RunPod's proxy cuts requests over ~100 MB or ~100 s, so the page sends big files in chunks (each a
quick request), can ask which chunks arrived after a dropped connection, and then starts an import
job that assembles and imports in the background while the page polls its progress.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from app import context, imaging
from app.frame_choice import check_frames, in_config, with_frames
from app.importer import SVG, Source, run_import
from app.store import clean_filename
from app.video_frames import VIDEO_EXTENSIONS
from studio import chunked
from studio.jobs import ACTIVE, Job
from studio.web import ApiError, json_body
from studio.workspace import confined

bp = Blueprint("uploads", __name__)
IMAGES = tuple(sorted(e.lstrip(".") for e in imaging.IMAGE_EXTENSIONS))
VIDEOS = tuple(sorted(e.lstrip(".") for e in VIDEO_EXTENSIONS))
ACCEPTED = ("zip", "parquet", "txt", *IMAGES, *VIDEOS)


def _limit_bytes() -> int:
    return context.settings().max_upload_mb * 2**20


def _too_large(size: int | None = None) -> ApiError:
    limit = context.settings().max_upload_mb
    what = f"This upload ({size / 2**20:,.1f} MB)" if size else "This upload"
    return ApiError(f"{what} is over the limit of {limit:,} MB (MAX_UPLOAD_MB).", 413)


def _check_name(filename) -> str:
    if not isinstance(filename, str) or not filename.strip():
        raise ApiError("Each file needs a name.", 422)
    ext = os.path.splitext(filename)[1].lower().lstrip(".")
    if ext == "svg":
        raise ApiError(f"{filename!r}: {SVG}.", 415)
    if ext not in ACCEPTED:
        raise ApiError(f"{filename!r} is not a supported file: upload .zip archives, images "
                       f"({', '.join('.' + e for e in IMAGES)}), videos to take frames from "
                       f"({', '.join('.' + e for e in VIDEOS)}) or Parquet files of a Hugging Face dataset.", 415)
    return filename


def _start_import(dataset, sources: list[Source], cleanup: list, parent_id: str | None = None,
                  skip_known: bool = False, config: dict | None = None, frames: dict | None = None) -> Job:
    """`frames`: the frames to take from videos (app.frame_choice), the pod's settings otherwise."""
    job_dir_name = f"import-{secrets.token_hex(6)}"
    work_dir = confined(context.workspace().uploads, job_dir_name)
    settings = with_frames(context.settings(), frames)

    def work(job):
        try:
            result = run_import(job, dataset, sources, settings, work_dir, skip_known=skip_known)
        except BaseException:
            for folder in cleanup:
                if config:  # upload sessions: the chunks stay (two days at most) for "Try again"
                    for assembled in Path(folder).glob("file-*"):
                        assembled.unlink(missing_ok=True)
                else:  # files sent in one request cannot run again
                    shutil.rmtree(folder, ignore_errors=True)
            raise
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        return result

    return context.executor().submit("import", dataset.id, work, parent_id=parent_id, config=config)


def _wait_for(job: Job) -> tuple[dict, int]:
    """API clients may ask to wait a little (`?wait=seconds`, at most 20) for small imports."""
    try:
        wait = min(float(request.args.get("wait", 0)), 20.0)
    except ValueError:
        wait = 0.0
    deadline = time.monotonic() + wait
    while job.status in ACTIVE and time.monotonic() < deadline:
        time.sleep(0.1)
        job = context.jobs().get(job.id)
    return job.public(), (202 if job.status in ACTIVE else 200)


@bp.post("/api/datasets/<dataset_id>/upload")
def upload(dataset_id: str):
    dataset = context.dataset(dataset_id)
    length = request.content_length
    if length is not None and length > _limit_bytes():
        raise _too_large(length)
    request.max_content_length = _limit_bytes()
    try:
        files = [f for f in request.files.getlist("files") + request.files.getlist("file") if f and f.filename]
    except RequestEntityTooLarge:  # no Content-Length: counted while streaming
        raise _too_large() from None
    if not files:
        raise ApiError("Attach one or more files in the 'files' field (multipart/form-data).", 400)
    for storage in files:
        _check_name(storage.filename)
    frames = check_frames(request.form)
    batch = confined(context.workspace().uploads, f"batch-{secrets.token_hex(8)}")
    batch.mkdir(parents=True)
    sources = []
    try:
        for index, storage in enumerate(files):
            target = confined(batch, f"{index:04d}-{clean_filename(storage.filename)}")
            storage.save(target)
            sources.append(Source(storage.filename, target))
    except BaseException:  # a full disk, a dropped connection: what was saved goes, not six hours later
        shutil.rmtree(batch, ignore_errors=True)
        raise
    body, status = _wait_for(_start_import(dataset, sources, [batch], frames=frames))
    return jsonify(body), status


# chunked sessions (studio.chunked) -----------------------------------------------------------------
def _session(dataset, sid: str) -> tuple[dict, Path]:
    return chunked.load(context.workspace().uploads, sid, {"dataset": dataset.id})


def session_exists(dataset, sid: str) -> bool:
    """True while an upload session of this dataset is on disk (it goes once an import of it completed)."""
    try:
        _session(dataset, sid)
    except ApiError:
        return False
    return True


@bp.post("/api/datasets/<dataset_id>/uploads")
def create_session(dataset_id: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    filename = _check_name(body.get("filename"))
    size = chunked.checked_size(body.get("size"), filename, context.settings().max_upload_mb)
    described = chunked.create(context.workspace().uploads, {"dataset": dataset.id}, filename, size,
                               context.settings().upload_chunk_mb * 2**20)
    return jsonify(described), 201


@bp.get("/api/datasets/<dataset_id>/uploads/<sid>")
def get_session(dataset_id: str, sid: str):
    return jsonify(chunked.describe(*_session(context.dataset(dataset_id), sid)))


@bp.delete("/api/datasets/<dataset_id>/uploads/<sid>")
def abort_session(dataset_id: str, sid: str):
    _, folder = _session(context.dataset(dataset_id), sid)
    shutil.rmtree(folder, ignore_errors=True)
    return jsonify({"aborted": sid})


@bp.put("/api/datasets/<dataset_id>/uploads/<sid>/chunks/<n>")
def put_chunk(dataset_id: str, sid: str, n: str):
    info, folder = _session(context.dataset(dataset_id), sid)
    return jsonify(chunked.receive_chunk(info, folder, n, request.stream, request.content_length))


def _assembler(info: dict, folder):
    def assemble(job):
        job.update(phase="assembling", message=f"Assembling {info['filename']}", bytes_done=0,
                   bytes_total=info["size"])
        return chunked.assemble(info, folder, confined(folder, f"file-{clean_filename(info['filename'])}"),
                                job.check_stop, lambda written: job.update(bytes_done=written))

    return assemble


@bp.post("/api/datasets/<dataset_id>/imports")
def import_sessions(dataset_id: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    return jsonify(import_from_sessions(dataset, body.get("sessions"), frames=check_frames(body)).public()), 202


def import_from_sessions(dataset, sids, parent_id: str | None = None, skip_known: bool = False,
                         frames: dict | None = None) -> Job:
    """One import job for finished upload sessions (ApiError when a session is unknown or incomplete); `frames`:
    the frames to take from videos (app.frame_choice)."""
    if not isinstance(sids, list) or not sids or not all(isinstance(s, str) for s in sids):
        raise ApiError("'sessions' must be a list of upload session ids.", 422)
    sources, cleanup = [], []
    for sid in sids:
        info, folder = _session(dataset, sid)
        chunked.check_complete(info, folder)
        sources.append(Source(info["filename"], prepare=_assembler(info, folder)))
        cleanup.append(folder)
    # what "Import the rest" runs again after an interruption (the sessions stay until an import of them completes)
    return _start_import(dataset, sources, cleanup, parent_id, skip_known,
                         {"source": "sessions", "sessions": sids, **in_config(frames)}, frames)


@bp.post("/api/datasets/<dataset_id>/uploads/<sid>/complete")
def complete_session(dataset_id: str, sid: str):
    dataset = context.dataset(dataset_id)
    # the same import as the page's: cut short by a restart or failed, it runs again from the chunks kept on disk
    job = import_from_sessions(dataset, [sid], frames=check_frames(json_body(optional=True)))
    return jsonify(job.public()), 202


@bp.get("/api/datasets/<dataset_id>/imports/<job_id>")
def import_progress(dataset_id: str, job_id: str):
    dataset = context.dataset(dataset_id)
    return jsonify(context.dataset_job(dataset, job_id, ("import",)).public())
