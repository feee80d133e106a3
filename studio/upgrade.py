"""Bring a workspace written by an earlier release up to date, once, when a service opens the job store.

- studio.db: the job store migrates its own schema (studio.job_schema).
- Dataset jobs kept as JSON files in `datasets/<id>/.jobs/` move into the job store; the files go.
- Export folders (`trainer/datasets/<name>/`) become content-addressed versions the name points at.
- Training jobs that recorded only an export name record that export's version.

Every step is idempotent and the whole upgrade runs under a file lock, so the three services starting
at once upgrade once. Nothing the user made is deleted: job history, datasets, captions, exports and
LoRAs are all still found afterwards.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
from contextlib import contextmanager

from studio import exports
from studio.atomic import read_json
from studio.jobs import KINDS, JobStore
from studio.workspace import Workspace

log = logging.getLogger(__name__)

_LEGACY_STATUS = {"done": "completed", "cancelled": "stopped", "failed": "failed", "interrupted": "interrupted",
                  "queued": "interrupted", "running": "interrupted"}
_LEGACY_COLUMNS = {"id", "kind", "state", "done", "total", "message", "current", "errors", "result", "pid",
                   "created_at", "started_at", "finished_at", "eta_s", "updated_at", "phase", "options"}


@contextmanager
def _upgrade_lock(workspace: Workspace):
    workspace.state.mkdir(parents=True, exist_ok=True)
    with open(workspace.state / "upgrade.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_job_store(workspace: Workspace) -> JobStore:
    """The workspace's job store, with the workspace upgraded first."""
    with _upgrade_lock(workspace):
        store = JobStore(workspace.db_path)
        if store.upgraded_from and store.upgraded_from < 2:
            log.info("job store upgraded from version %s", store.upgraded_from)
        upgrade_workspace(workspace, store)
    return store


def upgrade_workspace(workspace: Workspace, store: JobStore) -> dict:
    moved = import_dataset_job_files(workspace, store)
    adopted = adopt_export_folders(workspace)
    versioned = record_versions(workspace, store)
    if moved or adopted or versioned:
        log.info("workspace upgraded: %d dataset job(s) moved into the job store, %d export(s) made versions, "
                 "%d training job(s) now name their dataset version", moved, len(adopted), versioned)
    return {"dataset_jobs": moved, "exports": adopted, "train_jobs": versioned}


def _legacy_row(dataset_id: str, state: dict) -> dict | None:
    kind = state.get("kind")
    if not isinstance(state.get("id"), str) or kind not in KINDS or kind == "train":
        return None
    status = _LEGACY_STATUS.get(state.get("state"), "interrupted")
    message = state.get("message") or ""
    if state.get("state") in ("queued", "running"):
        message = "Interrupted: the service was upgraded while this was running. Start it again."
    details = {key: value for key, value in state.items() if key not in _LEGACY_COLUMNS}
    return {
        "id": state["id"], "kind": kind, "dataset": dataset_id, "status": status,
        "phase": state.get("phase"), "done": int(state.get("done") or 0), "total": int(state.get("total") or 0),
        "message": message, "error": message if status == "failed" else None, "current": None,
        "errors": state.get("errors") or [], "details": details, "result": state.get("result") or {},
        "config": state.get("options") or {}, "resumable": status in ("stopped", "failed", "interrupted"),
        "created_at": state.get("created_at") or 0.0, "started_at": state.get("started_at"),
        "finished_at": state.get("finished_at"),
        "updated_at": state.get("updated_at") or state.get("created_at") or 0.0,
    }


def import_dataset_job_files(workspace: Workspace, store: JobStore) -> int:
    moved = 0
    for folder in sorted(workspace.datasets.glob("*/.jobs")) if workspace.datasets.is_dir() else []:
        dataset_id = folder.parent.name
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith("latest-"):
                continue
            state = read_json(path, None)
            row = _legacy_row(dataset_id, state) if isinstance(state, dict) else None
            if row is not None:
                moved += store.restore(row)
        shutil.rmtree(folder, ignore_errors=True)
    return moved


def adopt_export_folders(workspace: Workspace) -> list[str]:
    adopted = []
    root = workspace.exports
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        try:
            version = exports.adopt_folder(workspace, path.name)
        except OSError as exc:
            log.error("could not make export %s a version: %s", path.name, exc)
            continue
        if version:
            adopted.append(path.name)
    return adopted


def record_versions(workspace: Workspace, store: JobStore) -> int:
    count = 0
    for job in store.list(kind="train", limit=1_000_000):
        if job.dataset_version or not job.dataset:
            continue
        try:
            version = exports.resolve(workspace, job.dataset)
        except ValueError:
            continue
        if version:
            store.update(job.id, dataset_version=version)
            count += 1
    return count
