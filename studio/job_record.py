"""One job of the studio's job store, as every part of the studio sees it: its fields, the one status
vocabulary, and the errors that go with jobs (studio.jobs stores them)."""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from studio.processes import token_pid
from studio.text import address_only

STATUSES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
ACTIVE = ("queued", "running")
FINISHED = ("completed", "failed", "stopped", "interrupted")
KINDS = ("import", "caption", "export", "train", "s3-import", "s3-push", "hub-push", "express", "render",
         "lora-import")
STOP_CONTROLS = ("stop", "delete")
# progress values with a column of their own; every other value goes into `details`
PROGRESS_COLUMNS = ("phase", "done", "total", "eta_s", "message", "current")
PROGRESS_ALIASES = {"step": "done", "total_steps": "total"}
JSON_COLUMNS = ("config", "errors", "details", "result", "datasets")
LIST_COLUMNS = ("errors", "datasets")


def dump_json(value) -> str:
    """JSON of a job's figures, a NaN or an infinity (the loss of a diverging run) written as null: the browser's
    JSON.parse refuses them, and one would stop every page that reads the job."""
    return json.dumps(_finite(value), default=str)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class JobNotFound(LookupError):
    """No job has that id."""


class JobStateError(RuntimeError):
    """The job is not in a state that allows the request (answered as 409)."""


class JobError(Exception):
    """A job failed for a reason the user can act on; the message is shown as is."""


class JobStopped(Exception):
    """Raised inside a job's work when a stop was asked for."""


@dataclass
class Job:
    id: str
    kind: str
    name: str = ""
    status: str = "queued"
    dataset: str | None = None
    dataset_version: str | None = None
    # a training job of several datasets: [{"name", "version", "repeats"}, ...], the first one also in
    # `dataset` and `dataset_version`; empty for a job of one dataset
    datasets: list = field(default_factory=list)
    parent_id: str | None = None
    after_id: str | None = None
    recipe: str | None = None
    config: dict = field(default_factory=dict)
    phase: str | None = None
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str | None = None
    error: str | None = None
    current: str | None = None
    errors: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    control: str | None = None
    resumable: bool = False
    owner: str | None = None
    child_pid: int | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    lora_path: str | None = None
    webhook_url: str | None = None
    idem_key: str | None = None
    fingerprint: str | None = None
    created_at: float = 0.0
    queue_key: float | None = None  # its place in the queue: created_at, or earlier once moved to the front
    started_at: float | None = None
    stop_requested_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    run_s: float = 0.0  # seconds its ended runs took (a resumed job's earlier runs; the one running counts live)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        for key in JSON_COLUMNS:
            data[key] = json.loads(data[key]) if data[key] else ([] if key in LIST_COLUMNS else {})
        data["resumable"] = bool(data["resumable"])
        return cls(**data)

    # training code speaks of steps
    @property
    def step(self) -> int:
        return self.done

    @property
    def total_steps(self) -> int:
        return self.total

    @property
    def sources(self) -> list[dict]:
        """Every dataset the job reads: [{"name", "version", "repeats"}], one entry for a one-dataset job."""
        if self.datasets:
            return self.datasets
        return [{"name": self.dataset, "version": self.dataset_version, "repeats": 1}] if self.dataset else []

    @property
    def dataset_label(self) -> str:
        """The datasets as people read them: `cats`, or `close-ups ×3 + full-body` for a mix."""
        return " + ".join(f"{s['name']} ×{s['repeats']}" if s.get("repeats", 1) != 1 else str(s["name"])
                          for s in self.sources)

    @property
    def loss(self) -> float | None:
        return self.details.get("loss")

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def stopping(self) -> bool:
        """Running, with a stop asked for: it ends at its next check."""
        return self.status == "running" and self.control in STOP_CONTROLS

    @property
    def owner_pid(self) -> int | None:
        return token_pid(self.owner) if self.owner else None

    def public(self) -> dict:
        """What the API shows: the row (no idempotency key, fingerprint or owner token), its details
        flattened beside it, and the names training clients know (`step`, `total_steps`)."""
        hidden = {"idem_key", "fingerprint", "owner", "details"}
        out = {key: value for key, value in self.details.items() if value is not None}
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden})
        if self.webhook_url:  # its path holds a token (Discord, Slack): the API shows the host; copies keep it
            out.update(webhook_url=address_only(self.webhook_url), webhook_set=True)
        out.update({"step": self.done, "total_steps": self.total, "progress": round(self.progress, 4),
                    "stopping": self.stopping, "worker_pid": self.owner_pid, "dataset_label": self.dataset_label,
                    "lora_file": Path(self.lora_path).name if self.lora_path else None})
        return out


def new_job_id(kind: str = "") -> str:
    """Sortable and readable: the creation time plus a random suffix (dataset jobs start with their kind)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    return f"{kind}-{stamp}" if kind and kind != "train" else stamp
