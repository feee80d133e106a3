"""Publish a finished job's LoRA to Hugging Face: a model repo (private unless asked otherwise) holding the LoRA,
a model card (README.md: base model, trigger word, settings, how to load it, the last previews as its gallery),
the proof grid, the ComfyUI workflow and those previews, in one commit. With the pod's HF_TOKEN (write access).

    POST   /api/jobs/<id>/publish-hub  {"repo": "name" or "owner/name", "private": true}  -> 202 {"publish"}
    GET    /api/jobs/<id>/publish-hub                                                     -> {"publish"}
    DELETE /api/jobs/<id>/publish-hub  stops it before its next file, nothing committed   -> 202

The upload runs in the background (a LoRA of a few hundred MB outlasts the proxy's 100 s); its state is a small
file in the job folder, so the page shows the last publication after a restart too. Publishing again to the same
repo adds a commit with the files as they are now.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Blueprint, jsonify

from studio.atomic import atomic_write_json, read_json
from studio.hub_write import NO_TOKEN, check_repo, full_name, settle_visibility, write_error
from studio.settings import Settings
from studio.web import ApiError, json_body, json_flag
from trainer import library
from trainer.jobs_api import load_job, settings, store, workspace
from trainer.lora_file import BASE_REPO
from trainer.timelapse import timelapse

log = logging.getLogger(__name__)
bp = Blueprint("hub_publish", __name__)
STATE_NAME = ".hub_publish.json"
PREVIEWS = 4  # the last preview step's first images: the card's gallery
LEARNED = "images/how-it-learned.webp"  # the first prompt's pictures in turn (trainer.timelapse)
_running: set[str] = set()
_stopping: set[str] = set()  # publications asked to stop (DELETE): they end before the next file
_committing: set[str] = set()  # publications past their last file: their commit is on its way, no stop is taken
_running_lock = threading.Lock()


def state(job_dir: Path) -> dict | None:
    return read_json(job_dir / STATE_NAME, None)


def _save(job_dir: Path, **values) -> dict:
    """The publication's state with `values`, written atomically into the job's folder, never making that folder:
    a job deleted while its LoRA goes up is in Recently deleted, and a folder made again in its place would keep
    it from coming back."""
    current = {**(state(job_dir) or {}), **values}
    try:
        atomic_write_json(job_dir / STATE_NAME, current, make_folder=False)
    except FileNotFoundError:  # the folder went to Recently deleted meanwhile
        pass
    return current


def publishing(job_id: str) -> bool:
    """Whether the job's LoRA is on its way to the hub now."""
    with _running_lock:
        return job_id in _running


@contextmanager
def not_publishing(job_id: str, refusal: str) -> Iterator[None]:
    """A change no publication of the job may meet (a delete, more steps): ApiError 409 `refusal` while one is on its
    way, and none starts until the change is made (a publication asked for meanwhile finds the job as it left it)."""
    with _running_lock:
        if job_id in _running:
            raise ApiError(refusal, 409)
        yield


def hub_name(name: str) -> str:
    """A LoRA's name (letters, digits, '-', '_' and '.') as a repo name the hub takes: no "--" or "..", no '-' or
    '.' at its end, 96 characters at most ("cat--v2-" -> "cat-v2"). job_publish.js offers the same in its dialog."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    name = re.sub(r"[-.]{2,}", lambda run: "." if set(run[0]) == {"."} else "-", name)
    return name[:96].strip("-.") or "lora"


def card(job, lora: Path, job_dir: Path, previews: list[tuple[str, str]], learned: bool = False) -> str:
    """README.md for the hub: front matter the hub reads (base model, tags, trigger word, gallery), then the
    README.txt the trainer wrote beside the LoRA; `learned`: the commit carries the first prompt's timelapse."""

    trigger = (job.config.get("trigger_word") or "").strip()
    lokr = job.config.get("network") == "lokr"
    lines = ["---", f"base_model: {BASE_REPO}", "library_name: diffusers",
             "pipeline_tag: text-to-image", "tags:", "- lora", *(["- lycoris", "- lokr"] if lokr else []),
             "- text-to-image", "- z-image-turbo", "- template:sd-lora"]
    if trigger:
        lines.append(f"instance_prompt: {json.dumps(trigger)}")
    if previews:
        lines.append("widget:")
        for path, prompt in previews:
            lines += [f"- text: {json.dumps(prompt)}", "  output:", f"    url: {path}"]
    lines.append("---")
    readme = job_dir / "lora" / library.PROOF_FILES["readme"]
    body = readme.read_text("utf-8") if readme.is_file() else ""
    title = job.config.get("name") or job.id
    kind = "A LyCORIS LoKr" if lokr else "A LoRA"
    intro = (f"# {title}\n\n{kind} for [{BASE_REPO}](https://huggingface.co/{BASE_REPO}), "
             f"file `{lora.name}`" + (f", trigger word `{trigger}`" if trigger else "") + ".\n")
    gallery = "".join(f"\n![{prompt}]({path})\n" for path, prompt in previews)
    if learned:  # the first prompt's pictures in turn (trainer.timelapse)
        gallery += (f"\n## How it learned\n\nThe first preview prompt with the LoRA off, then at every preview step:"
                    f"\n\n![how it learned]({LEARNED})\n")
    return "\n".join(lines) + "\n\n" + intro + gallery + (f"\n```text\n{body.rstrip()}\n```\n" if body else "")


def files_to_publish(job, job_dir: Path) -> tuple[Path, list[tuple[str, Path]], list[tuple[str, str]]]:
    """(the LoRA, [(path in repo, file)], [(preview path in repo, its prompt)]); ApiError when there is no LoRA."""
    lora = library.final_lora(job, job_dir)
    if lora is None:
        raise ApiError("This job has no finished LoRA to publish.", 409)
    files = [(lora.name, lora)]
    for key in ("grid", "workflow"):
        path = job_dir / "lora" / library.PROOF_FILES[key]
        if path.is_file():
            files.append((path.name, path))
    last = library.last_samples(job_dir)
    previews = []
    for index, relative in enumerate((last or {}).get("images", [])[:PREVIEWS]):
        path = job_dir / relative
        prompts = last.get("prompts") or []
        files.append((f"images/{index + 1}{path.suffix.lower()}", path))
        previews.append((f"images/{index + 1}{path.suffix.lower()}", prompts[index] if index < len(prompts) else ""))
    try:
        files.append((LEARNED, timelapse(job_dir, 0)))
    except ApiError:  # fewer than two pictures of the first prompt: nothing to play
        pass
    return lora, files, previews


class PublishStopped(Exception):
    """The user stopped a publication before its commit: the repo holds nothing of it."""


def publish(conf: Settings, repo: str, private: bool, job, job_dir: Path, say=None, stopped=None) -> dict:
    """The LoRA of `job` (a job record, or the serverless worker's stand-in: `config` as a dict, `id`, `step`,
    `lora_path`) published in one commit; {"repo", "url", "commit", "files", "private", "visibility"}
    (the repo's visibility now, and a note when it is not the one asked for). `say(message, repo=None)` hears each
    stage, each file as it goes up too; `stopped()`, asked between two files, ends it (PublishStopped) before the
    commit; asked last as `stopped(committing=True)`, a False also means no stop is taken from then on. ApiError
    when there is no LoRA; the hub's own exceptions otherwise (`write_error` words them)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    say = say or (lambda message, repo=None: None)
    api = HfApi(endpoint=conf.hf_endpoint, token=conf.hf_token)
    if "/" not in repo:
        say("Asking Hugging Face who the token belongs to")
        repo = full_name(api, repo)
    lora, files, previews = files_to_publish(job, job_dir)
    say(f"Creating {repo}", repo)
    api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
    private, visibility = settle_visibility(api, repo, "model", private)  # an existing repo keeps its own
    size = sum(path.stat().st_size for _, path in files)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files]
    sent = 0
    for index, (operation, (name, path)) in enumerate(zip(operations, files, strict=True)):  # the LoRA first
        if stopped is not None and stopped():
            raise PublishStopped()
        say(f"Uploading {name} (file {index + 1} of {len(files)}; {sent / 2**20:,.1f} of {size / 2**20:,.1f} MB "
            "sent)")
        api.preupload_lfs_files(repo, additions=[operation], repo_type="model")
        sent += path.stat().st_size
    if stopped is not None and stopped(committing=True):
        raise PublishStopped()
    say(f"Committing {len(files) + 1} files ({size / 2**20:,.1f} MB) to {repo}")
    operations.append(CommitOperationAdd(path_in_repo="README.md",
                                         path_or_fileobj=card(job, lora, job_dir, previews,
                                                              any(name == LEARNED for name, _ in files)).encode()))
    # a publish again with fewer previews: the earlier ones it does not replace go, or the repo's page would show
    # an older LoRA's pictures beside this one (other files of the repo, an older LoRA file, stay)
    names = {name for name, _ in files}
    stale = [path for path in api.list_repo_files(repo, repo_type="model")
             if (path.startswith("images/") or path == LEARNED) and path not in names]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    info = api.create_commit(repo, operations, commit_message=f"{job.config.get('name') or job.id}: "
                                                              f"{lora.name} ({job.step} steps)")
    base = (conf.hf_endpoint or "https://huggingface.co").rstrip("/")
    log.info("published job %s to %s", job.id, repo)
    return {"repo": repo, "url": f"{base}/{repo}", "commit": info.oid,
            "files": [name for name, _ in files] + ["README.md"], "private": private, "visibility": visibility}


def _publish(job, job_dir: Path, repo: str, private: bool, conf: Settings) -> None:
    def say(message: str, named: str | None = None) -> None:
        _save(job_dir, message=message, **({"repo": named} if named else {}))

    ended = {"status": "failed", "message": "The upload stopped for an unknown reason: publish again."}
    try:
        def stopped(committing: bool = False) -> bool:
            with _running_lock:  # a stop asked for from here on is refused: the commit cannot be called back
                if job.id in _stopping:
                    return True
                if committing:
                    _committing.add(job.id)
                    _save(job_dir, stoppable=False)
                return False

        done = publish(conf, repo, private, job, job_dir, say, stopped=stopped)
        note = f" ({done['visibility']})" if done["visibility"] else ""
        ended = {"status": "completed", "message": f"Published to {done['repo']}{note}.", "url": done["url"],
                 "commit": done["commit"], "files": done["files"], "private": done["private"],
                 "visibility": done["visibility"]}
    except PublishStopped:
        ended = {"status": "stopped", "message": "Stopped before anything was committed: the repo is as it was."}
    except ApiError as exc:
        ended = {"status": "failed", "message": exc.message}
    except Exception as exc:  # every hub failure is one sentence on the page
        log.warning("publishing job %s to %s failed", job.id, repo, exc_info=True)
        ended = {"status": "failed", "message": write_error(exc, repo)}
    finally:
        with _running_lock:  # the end and the running set change together: a page that sees the end may publish again
            try:
                _save(job_dir, **ended, finished_at=time.time())
            finally:  # even when the end cannot be written: the job is never "being published already" for good
                _running.discard(job.id)
                _stopping.discard(job.id)
                _committing.discard(job.id)


@bp.post("/api/jobs/<job_id>/publish-hub")
def start_publish(job_id: str):
    job = load_job(job_id)
    conf = settings()
    body = json_body()
    repo = check_repo(body.get("repo", hub_name(job.config.get("name") or job.id)))
    private = json_flag(body, "private", True)
    if not conf.hf_token:
        raise ApiError(NO_TOKEN, 409)
    if job.status != "completed":
        raise ApiError("Only a finished job's LoRA can be published.", 409)
    job_dir = workspace().jobs / job.id
    files_to_publish(job, job_dir)  # no LoRA answers now
    with _running_lock:
        if job.id in _running:
            raise ApiError("This job's LoRA is being published already.", 409)
        now = store().find(job.id)  # as it is now: deleted, or training more, since it was read (not_publishing)
        if now is None or not job_dir.is_dir():
            raise ApiError("This job was deleted a moment ago: restore it from Recently deleted to publish it.", 409)
        if now.status != "completed":
            raise ApiError("Only a finished job's LoRA can be published.", 409)
        _running.add(job.id)
    current = {"status": "running", "repo": repo, "private": private, "message": "Starting", "url": None,
               "stoppable": True,
               "started_at": time.time(), "finished_at": None, "files": [], "commit": None}
    atomic_write_json(job_dir / STATE_NAME, current, make_folder=False)
    threading.Thread(target=_publish, args=(job, job_dir, repo, private, conf), daemon=True,
                     name=f"publish-{job.id}").start()
    return jsonify({"publish": current}), 202


@bp.delete("/api/jobs/<job_id>/publish-hub")
def stop_publish(job_id: str):
    """Stop a publication on its way: it ends before its next file, and nothing is committed (202); 409 when none
    is running."""
    job = load_job(job_id)
    with _running_lock:
        if job.id not in _running:
            raise ApiError("This job's LoRA is not being published now.", 409)
        if job.id in _committing:
            raise ApiError("Every file is up and the commit is on its way: it can no longer be stopped.", 409)
        _stopping.add(job.id)
    _save(workspace().jobs / job.id, message="Stopping after the file on its way")
    return jsonify({"stopping": True}), 202


@bp.get("/api/jobs/<job_id>/publish-hub")
def publish_state(job_id: str):
    job = load_job(job_id)
    with _running_lock:  # read with the running set: an upload that ends meanwhile is not taken for a cut-off one
        found = state(workspace().jobs / job.id)
        if found and found.get("status") == "running" and job.id not in _running:  # its process is gone: a restart
            found = _save(workspace().jobs / job.id, status="failed", finished_at=time.time(),
                          message="The upload was cut off by a restart (or the job was deleted meanwhile): "
                                  "publish again.")
    return jsonify({"publish": found, "token": bool(settings().hf_token)})
