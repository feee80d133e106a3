"""Add a LoRA to the library from this computer: the file goes up in chunks (studio.chunked: RunPod's proxy cuts a
request at ~100 MB or ~100 s, and the page's chunked_upload.js resumes after a dropped connection), then a job of the
one job store, of the kind a link's import is (trainer.lora_import), puts it together, brings another trainer's key
names to this studio's (a LoHa to a LoRA), checks it is a LoRA of Z-Image's layers and places it in the library and
ComfyUI's loras.

    POST   /api/library/uploads {"filename", "size"}  -> 201 the session {id, chunk_size, chunks, missing, ...}
    GET    /api/library/uploads/<id>                  -> the session: which chunks arrived
    PUT    /api/library/uploads/<id>/chunks/<n>       -> one chunk (the request's body)
    DELETE /api/library/uploads/<id>
    POST   /api/library/uploads/<id>/complete         -> 202 {"job"} (the same job when asked again while it runs)
"""

from __future__ import annotations

import secrets
import shutil
import threading

from flask import Blueprint, jsonify, request

from studio import chunked
from studio.atomic import atomic_write_json
from studio.jobs import ACTIVE, JobError
from studio.web import ApiError, json_body
from studio.workspace import confined
from trainer.lora_import import INCOMING, KIND, add_to_library, executor

bp = Blueprint("library_upload", __name__)
OWNER = {"library": "loras"}
_completing = threading.Lock()  # one job per session (the web app is one process; its imports run in it)


def _session(sid: str):
    from trainer.jobs_api import workspace

    return chunked.load(workspace().uploads, sid, OWNER)


@bp.post("/api/library/uploads")
def create_session():
    from trainer.jobs_api import settings, workspace

    body, conf = json_body(), settings()
    filename = body.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise ApiError("The file needs a name.", 422)
    if not filename.lower().endswith(".safetensors"):
        raise ApiError(f"{filename!r} is not a .safetensors file: a LoRA for the library is one (what ai-toolkit, "
                       "kohya, musubi-tuner, SimpleTuner and this studio write).", 415)
    size = chunked.checked_size(body.get("size"), filename, conf.max_upload_mb)
    return jsonify(chunked.create(workspace().uploads, OWNER, filename, size, conf.upload_chunk_mb * 2**20)), 201


@bp.get("/api/library/uploads/<sid>")
def get_session(sid: str):
    return jsonify(chunked.describe(*_session(sid)))


@bp.delete("/api/library/uploads/<sid>")
def abort_session(sid: str):
    _, folder = _session(sid)
    shutil.rmtree(folder, ignore_errors=True)
    return jsonify({"aborted": sid})


@bp.put("/api/library/uploads/<sid>/chunks/<n>")
def put_chunk(sid: str, n: str):
    info, folder = _session(sid)
    return jsonify(chunked.receive_chunk(info, folder, n, request.stream, request.content_length))


@bp.post("/api/library/uploads/<sid>/complete")
def complete_session(sid: str):
    from trainer.jobs_api import store, workspace

    space = workspace()
    with _completing:
        info, folder = _session(sid)
        chunked.check_complete(info, folder)
        running = store().find(info["job"]) if info.get("job") else None
        if running is not None and running.status in ACTIVE:  # asked twice (a double click, a retry): one file
            return jsonify({"job": running.public()}), 202
        name = info["filename"]
        job, _ = store().create(KIND, dataset="", name=f"LoRA {name} from this computer", owner=executor().owner,
                                config={"upload": sid, "filename": name}, message="Waiting for a free slot.")
        atomic_write_json(folder / "session.json", {**info, "job": job.id})  # before it can run and end

    made, jobs = job, store()  # the job runs in a thread of its own, outside this request

    def work(job) -> dict:
        incoming = confined(space.loras, INCOMING, f"{secrets.token_hex(8)}.safetensors")
        incoming.parent.mkdir(parents=True, exist_ok=True)
        job.update(phase="assembling", message=f"Putting {name} together")
        try:
            chunked.assemble(info, folder, incoming, job.check_stop)
            result = add_to_library(job, space, incoming, name, None)
        except JobError:  # refused (not a LoRA of this model): sending it again would not change that
            shutil.rmtree(folder, ignore_errors=True)
            jobs.update(made.id, config={**made.config, "chunks_kept": False})  # the page offers no Try again
            raise
        finally:
            incoming.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)  # otherwise the chunks stay for another try (two days at most)
        return result

    return jsonify({"job": executor().submit(KIND, "", work, job=job).public()}), 202
