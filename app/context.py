"""Accessors the blueprints share: settings, the dataset store and the background job runner."""

from __future__ import annotations

from flask import current_app

from app.jobs import JobRunner
from app.store import Dataset, DatasetStore
from studio.settings import Settings
from studio.workspace import Workspace


def settings() -> Settings:
    return current_app.config["STUDIO_SETTINGS"]


def workspace() -> Workspace:
    return current_app.config["STUDIO_WORKSPACE"]


def store() -> DatasetStore:
    return current_app.extensions["dataset_store"]


def runner() -> JobRunner:
    return current_app.extensions["job_runner"]


def dataset(dataset_id: str) -> Dataset:
    """The dataset named in the URL (404 when missing, 400 when the id is not a plain name)."""
    return store().get(dataset_id)
