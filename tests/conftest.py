"""Shared fixtures: a temp STUDIO_ROOT per test, settings, the three Flask apps, tiny demo models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from studio.settings import load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Property tests draw the same examples on every run, so the suite passes or fails the same way each
# time; STUDIO_EXPLORE=1 draws new ones (worth a run now and then: that is how 'º:' was found). A case
# found that way is kept as an @example in its test.
hypothesis_settings.register_profile("studio", derandomize=os.environ.get("STUDIO_EXPLORE") != "1")
hypothesis_settings.load_profile("studio")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def studio_root(tmp_path) -> Path:
    root = tmp_path / "studio"
    root.mkdir()
    return root


@pytest.fixture
def make_settings(studio_root):
    """make_settings(STUDIO_PASSWORD="x", ...) -> Settings rooted in this test's temp root."""

    def make(**env):
        base = {"STUDIO_ROOT": str(studio_root)}
        base.update({key: str(value) for key, value in env.items()})
        return load_settings(base)

    return make


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def trainer_app(make_settings):
    """The trainer's Flask app in demo mode on this test's root."""
    import trainer

    return trainer.create_app(make_settings(STUDIO_DEMO=1))


@pytest.fixture
def trainer_client(trainer_app):
    return trainer_app.test_client()


@pytest.fixture(scope="session")
def demo_models_root(tmp_path_factory) -> Path:
    """A STUDIO_ROOT whose models/demo holds the tiny demo models, built once per test session."""
    from studio.demo import ensure_demo_models

    root = tmp_path_factory.mktemp("demo-models-root")
    ensure_demo_models(load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1"}))
    return root


@pytest.fixture
def demo_paths(demo_models_root):
    from studio.registry import model_paths

    return model_paths(load_settings({"STUDIO_ROOT": str(demo_models_root), "STUDIO_DEMO": "1"}))


@pytest.fixture
def demo_root(studio_root, demo_models_root) -> Path:
    """This test's STUDIO_ROOT with the session's demo models linked in (read-only use)."""
    models = studio_root / "models"
    models.mkdir(exist_ok=True)
    (models / "demo").symlink_to(demo_models_root / "models" / "demo", target_is_directory=True)
    return studio_root


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
