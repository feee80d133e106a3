"""Creating a training job: validate the request, record the dataset version it trains on, queue it.

The trainer's API and the express lane (in the dataset manager) create jobs through this one function,
so a job made either way is checked and recorded the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging

from studio import exports
from studio.jobs import Job, JobStore
from studio.settings import Settings
from studio.workspace import Workspace
from trainer.dataset_checks import requested
from trainer.validation import Report, validate

DEDUP_WINDOW_S = 10.0
log = logging.getLogger(__name__)


class JobInvalid(ValueError):
    """The request failed validation; `.report` says why, field by field."""

    def __init__(self, report: Report):
        first = report.errors[0]
        where = f" ({first['field']})" if first.get("field") else ""
        super().__init__(f"The job is not valid{where}: {first['message']}")
        self.report = report


def pinned_version(workspace: Workspace, name: str, version: str | None = None) -> str:
    """The version of an export a new job trains on: the one the request names, else the one the
    export name points at now (an export folder copied in by hand becomes a version here)."""
    return version or exports.resolve(workspace, name) or exports.adopt_folder(workspace, name)


def pinned_sources(workspace: Workspace, payload: dict) -> list[dict]:
    """The datasets of a valid request, each with the version the job will read."""
    return [{**source, "version": pinned_version(workspace, source["name"], source.get("version"))}
            for source in requested(payload, Report())]


def _fingerprint(payload: dict, config: dict) -> str:
    basis = {"recipe": payload.get("recipe") or "zimage-turbo", "dataset": payload.get("dataset"), "config": config,
             **({"datasets": payload["datasets"]} if payload.get("datasets") else {}),
             "name": payload.get("name"), "webhook_url": payload.get("webhook_url")}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def submit_job(settings: Settings, store: JobStore, payload: dict, *, idem_key: str | None = None,
               parent_id: str | None = None) -> tuple[Job, bool, Report]:
    """Validate and queue; returns (job, created, report). Raises JobInvalid."""
    report = validate(settings, payload)
    if not report.ok:
        raise JobInvalid(report)
    config = report.config or {}
    sources = pinned_sources(Workspace(settings.root), payload)
    job, created = store.create(
        "train", name=(report.name or "job")[:120], recipe=payload.get("recipe") or "zimage-turbo", config=config,
        dataset=sources[0]["name"], dataset_version=sources[0]["version"],
        datasets=sources if payload.get("datasets") else None,
        parent_id=parent_id, webhook_url=payload.get("webhook_url") or _webhook_of(store, payload), idem_key=idem_key,
        fingerprint=_fingerprint(payload, config), dedup_window_s=DEDUP_WINDOW_S,
        total=int(config.get("steps") or 0))
    if created and config.get("init_lora"):
        _keep_start_lora(Workspace(settings.root), job)
    return job, created, report


def _webhook_of(store: JobStore, payload: dict) -> str | None:
    """The webhook of the job `webhook_from` names (a job copied on the page, whose address is not shown there)."""
    source = payload.get("webhook_from")
    found = store.find(source) if isinstance(source, str) and source else None
    return found.webhook_url if found is not None else None


def _keep_start_lora(workspace: Workspace, job: Job) -> None:
    """The job's own copy of the LoRA it starts from, made when it is queued (a link: no space), so the library
    may change while it waits; when that fails, the job makes it when it starts."""
    from trainer.run_job import stage_start_lora

    try:
        stage_start_lora(workspace, job, workspace.job_dir(job.id))
    except (OSError, ValueError) as exc:
        log.warning("job %s: the LoRA to start from is copied when it starts instead (%s)", job.id, exc)
