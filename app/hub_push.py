"""Publish a dataset's export to Hugging Face as a dataset repo (private unless asked otherwise), in one commit:

    train/<image>            every exported image, without its location, camera and editing metadata
                             (app.private_metadata: the picture itself is not changed)
    train/<image stem>.txt   its caption, trigger word included (the layout LoRA trainers read)
    train/metadata.jsonl     file_name + text per image (the layout `datasets.load_dataset` and the hub's viewer read)
    README.md                a dataset card: the trigger word, how to load it, a few of the images

    POST /api/datasets/<id>/push-hub  {"repo": "name" or "owner/name", "private": true, "export"?}  -> 202 job
    GET  /api/datasets/<id>/push-hub                                                               -> {"job", "token"}

With the pod's HF_TOKEN (write access). The files are uploaded in groups first (the job shows their progress and
stops between two groups), then committed at once, so the repo never holds half a dataset. Publishing again
commits the export as it is then: images no longer in it are removed from `train/`.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from pathlib import Path

from flask import Blueprint, jsonify

from app import context, imaging, private_metadata
from app.export import export_folder
from app.store import natural_key
from studio import exports
from studio.atomic import read_json
from studio.hub_write import NO_TOKEN, check_repo, full_name, settle_visibility, write_error
from studio.job_reporter import JobReporter
from studio.jobs import ACTIVE, JobError, JobStopped
from studio.settings import Settings
from studio.text import plural
from studio.web import ApiError, json_body, json_flag
from studio.workspace import Workspace, confined

log = logging.getLogger(__name__)
bp = Blueprint("hub_push", __name__)
KIND = "hub-push"
FOLDER = "train"
GROUP_FILES = 64  # files uploaded between two progress reports (and two chances to stop)
PREVIEWS = 4
IMAGE_PATTERNS = [f"{FOLDER}/*{ext}" for ext in (".jpg", ".jpeg", ".png", ".webp")]


def export_files(folder: Path) -> tuple[list[tuple[str, Path]], list[dict]]:
    """([(path in the repo, file)] of the export's images and captions, [metadata.jsonl rows])."""
    images = sorted((path for path in folder.iterdir() if path.is_file() and imaging.is_image_name(path.name)),
                    key=lambda path: natural_key(path.name))
    files, rows = [], []
    for image in images:
        files.append((f"{FOLDER}/{image.name}", image))
        caption = image.with_suffix(".txt")
        text = caption.read_text("utf-8").strip() if caption.is_file() else ""
        if caption.is_file():
            files.append((f"{FOLDER}/{caption.name}", caption))
        rows.append({"file_name": image.name, "text": text})
    return files, rows


def card(repo: str, export: dict, rows: list[dict]) -> str:
    """README.md: front matter the hub reads (task, tags, the image files as the train split), then the card."""
    count = len(rows)
    size = "n<1K" if count < 1000 else "1K<n<10K" if count < 10_000 else "10K<n<100K"
    lines = ["---", "task_categories:", "- text-to-image", "tags:", "- lora", "- z-image-turbo",
             "- image-captioning", "size_categories:", f"- {size}", "configs:", "- config_name: default",
             "  data_files:", "  - split: train", "    path:"]
    lines += [f"    - {json.dumps(pattern)}" for pattern in [*IMAGE_PATTERNS, f"{FOLDER}/metadata.jsonl"]]
    lines.append("---")
    trigger = (export.get("trigger_word") or "").strip()
    title = export.get("name") or repo.split("/")[-1]
    body = [f"# {title}", "",
            f"{plural(count, 'image')} with captions for training a LoRA"
            + (f", trigger word `{trigger}` (already in every caption)" if trigger else "") + ".", "",
            "```python", "from datasets import load_dataset", "",
            f"dataset = load_dataset({json.dumps(repo)}, split=\"train\")  # columns: image, text", "```", "",
            f"`{FOLDER}/` also holds each image's caption as a same-name `.txt` file, the layout LoRA trainers read "
            f"(version `{export.get('version', '')}` of the export).", ""]
    body += [f"![{row['text'][:80]}]({FOLDER}/{row['file_name']})" for row in rows[:PREVIEWS]]
    return "\n".join(lines) + "\n\n" + "\n".join(body) + "\n"


def run_push(job: JobReporter, folder: Path, name: str, repo: str, private: bool, conf: Settings) -> dict:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    export = read_json(folder / "dataset.json", {}) or {}
    files, rows = export_files(folder)
    if not rows:
        raise JobError(f"The export {name} has no images to publish.")
    api = HfApi(endpoint=conf.hf_endpoint, token=conf.hf_token)
    work = confined(Workspace(conf.root).uploads, f"publish-{secrets.token_hex(6)}")
    try:
        files, cleaned = private_metadata.removed(job, files, work)
        if "/" not in repo:
            job.update(phase="uploading", message="Asking Hugging Face who the token belongs to")
            repo = full_name(api, repo)
        job.update(phase="uploading", message=f"Creating {repo}")
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        private, visibility = settle_visibility(api, repo, "dataset", private)  # an existing repo keeps its own
        additions = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(file)) for path, file in files]
        sizes = [file.stat().st_size for _, file in files]
        for start in range(0, len(additions), GROUP_FILES):
            job.check_stop()
            group = additions[start:start + GROUP_FILES]
            job.update(done=start, total=len(additions), bytes_done=sum(sizes[:start]), bytes_total=sum(sizes),
                       message=f"Uploading {start + len(group)} of {plural(len(additions), 'file')} to {repo}")
            api.preupload_lfs_files(repo, additions=group, repo_type="dataset", free_memory=False)
        job.check_stop()
        job.update(done=len(additions), bytes_done=sum(sizes), message=f"Committing to {repo}")
        keep = {path for path, _ in files} | {f"{FOLDER}/metadata.jsonl"}
        stale = [path for path in api.list_repo_files(repo, repo_type="dataset")
                 if path.startswith(f"{FOLDER}/") and path not in keep]
        metadata = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        operations = [*additions, CommitOperationAdd(f"{FOLDER}/metadata.jsonl", metadata),
                      CommitOperationAdd("README.md", card(repo, export, rows).encode()),
                      *(CommitOperationDelete(path) for path in stale)]
        info = api.create_commit(repo, operations, repo_type="dataset",
                                 commit_message=f"{name}: {plural(len(rows), 'image')} "
                                                f"(version {export.get('version', '?')})")
    except (JobError, JobStopped):
        raise
    except Exception as exc:  # every hub failure is one sentence
        log.warning("publishing %s to %s failed", name, repo, exc_info=True)
        raise JobError(write_error(exc, repo)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    url = f"{(conf.hf_endpoint or 'https://huggingface.co').rstrip('/')}/datasets/{repo}"
    notes = [f"location and camera data removed from {plural(cleaned, 'photo')}"] if cleaned else []
    notes += [visibility] if visibility else []
    note = f" ({'; '.join(notes)})" if notes else ""
    job.update(message=f"Published {plural(len(rows), 'image')} to {repo}{note}.")
    return {"repo": repo, "url": url, "commit": info.oid, "export": name, "version": export.get("version"),
            "images": len(rows), "removed": stale, "private": private, "cleaned": cleaned, "visibility": visibility}


@bp.post("/api/datasets/<dataset_id>/push-hub")
def start_push(dataset_id: str):
    dataset = context.dataset(dataset_id)
    conf = context.settings()
    body = json_body()
    name, folder = export_folder(dataset, body.get("export"))
    version = exports.resolve(context.workspace(), name)  # the version exported now, even if exported again meanwhile
    folder = exports.version_dir(context.workspace(), version) if version else folder.resolve()
    repo = check_repo(body.get("repo", name), kind="dataset", example="my-dataset")
    private = json_flag(body, "private", True)
    if not conf.hf_token:
        raise ApiError(NO_TOKEN, 409)
    with dataset.lock():  # two tabs at once: the second sees the first's job
        current = context.jobs().latest(KIND, dataset.id)
        if current and current.status in ACTIVE:
            raise ApiError("This dataset is being published already.", 409)
        job = context.executor().submit(KIND, dataset.id, lambda j: run_push(j, folder, name, repo, private, conf),
                                        name=name)
        # the version it reads stays until it ends: re-exported meanwhile, the old one could be deleted under it
        if version:
            job = context.jobs().update(job.id, dataset_version=version)
    return jsonify(job.public()), 202


@bp.get("/api/datasets/<dataset_id>/push-hub")
def push_state(dataset_id: str):
    dataset = context.dataset(dataset_id)
    return jsonify({"job": context.latest_job(dataset, KIND), "token": bool(context.settings().hf_token)})
