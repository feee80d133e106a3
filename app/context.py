"""Accessors the blueprints share: settings, the dataset store, the job store and its executor."""

from __future__ import annotations

from flask import current_app

from app.executor import JobExecutor
from app.store import Dataset, DatasetStore
from studio.jobs import Job, JobStore
from studio.settings import Settings
from studio.web import ApiError
from studio.workspace import Workspace


def settings() -> Settings:
    return current_app.config["STUDIO_SETTINGS"]


def workspace() -> Workspace:
    return current_app.config["STUDIO_WORKSPACE"]


def store() -> DatasetStore:
    return current_app.extensions["dataset_store"]


def jobs() -> JobStore:
    return current_app.extensions["job_store"]


def executor() -> JobExecutor:
    return current_app.extensions["job_executor"]


def dataset_job(dataset: Dataset, job_id: str, kinds: tuple[str, ...]) -> Job:
    """A job of this dataset by id (404 when it is another dataset's or another kind)."""
    job = jobs().find(job_id)
    if job is None or job.dataset != dataset.id or job.kind not in kinds:
        raise ApiError("There is no such job for this dataset.", 404)
    return job


def latest_job(dataset: Dataset, kind: str) -> dict | None:
    job = jobs().latest(kind, dataset.id)
    return job.public() if job else None


def dataset(dataset_id: str) -> Dataset:
    """The dataset named in the URL (404 when missing, 400 when the id is not a plain name)."""
    return store().get(dataset_id)
