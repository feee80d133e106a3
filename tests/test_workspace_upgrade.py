"""A workspace written by the first release (tests/data/legacy-workspace-v1.tar.gz) opens with the
current code: the job store is migrated, dataset jobs move into it, exports become versions, and
nothing the user had (datasets, captions, jobs, LoRAs) is lost."""

from __future__ import annotations

import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

import app as datasets_app
import trainer
from studio import exports
from studio.job_schema import SCHEMA_VERSION, SchemaTooNew, migrate
from studio.jobs import JobStore
from studio.settings import load_settings
from studio.workspace import Workspace

LEGACY = Path(__file__).parent / "data" / "legacy-workspace-v1.tar.gz"


@pytest.fixture
def legacy(tmp_path) -> tuple[Path, dict]:
    with tarfile.open(LEGACY) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "studio"
    return root, json.loads((root / "legacy-ids.json").read_text())


def _settings(root: Path):
    return load_settings({"STUDIO_ROOT": str(root)})


def test_the_first_release_database_is_version_1(legacy):
    root, _ = legacy
    conn = sqlite3.connect(root / "studio.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert "total_steps" in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}


def test_everything_is_found_after_the_upgrade(legacy):
    root, ids = legacy
    before = {p.relative_to(root) for p in (root / "datasets").rglob("*") if ".jobs" not in p.parts}
    datasets = datasets_app.create_app(_settings(root)).test_client()
    jobs_app = trainer.create_app(_settings(root))
    jobs = jobs_app.test_client()

    # datasets, images and captions are untouched; the JSON job files are gone
    after = {p.relative_to(root) for p in (root / "datasets").rglob("*")}
    assert before <= after and not list(root.glob("datasets/*/.jobs"))
    cat = datasets.get(f"/api/datasets/{ids['dataset']}").get_json()
    assert cat["images"] == 4 and cat["captioned"] == 3 and cat["trigger_word"] == "mycat"
    assert (root / "datasets" / "my-cat" / "cat1.txt").read_text() == "a photo of a cat number 1"
    # their job history is in the job store, with the one vocabulary
    assert cat["jobs"]["import"]["status"] == "completed" and cat["jobs"]["export"]["status"] == "completed"
    assert cat["jobs"]["export"]["result"]["name"] == "my-cat"
    caption = datasets.get(f"/api/datasets/{ids['dataset2']}/caption").get_json()["job"]
    assert caption["id"] == ids["caption_job"] and caption["status"] == "interrupted" and caption["done"] == 1

    # the export became a version its name points at, with every file
    version = exports.resolve(Workspace(root), "my-cat")
    folder = root / "trainer" / "datasets" / "my-cat"
    assert version and folder.is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"cat{i}.{ext}" for i in range(4) for ext in ("png", "txt")] + ["dataset.json"])
    assert (folder / "cat0.txt").read_text().strip() == "mycat, a photo of a cat number 0"

    # training jobs: same ids, statuses, figures; each names the version it trains on
    listed = {job["id"]: job for job in jobs.get("/api/jobs").get_json()["jobs"]}
    assert set(listed) == {ids[k] for k in ("completed", "stopped", "failed", "running", "queued")}
    done = jobs.get(f"/api/jobs/{ids['completed']}").get_json()
    assert done["job"]["status"] == "completed" and done["job"]["loss"] == 0.3 and done["job"]["step"] == 10
    assert done["job"]["dataset_version"] == version and done["lora"]["file"] == "my-cat.safetensors"
    assert jobs.get(f"/api/jobs/{ids['completed']}/files/lora/my-cat.safetensors").status_code == 200
    stopped = listed[ids["stopped"]]
    assert stopped["status"] == "stopped" and stopped["resumable"] and stopped["step"] == 50
    assert jobs.get(f"/api/jobs/{ids['stopped']}").get_json()["latest_checkpoint"] == 50
    assert listed[ids["failed"]]["status"] == "failed" and "out of memory" in listed[ids["failed"]]["error"]
    # the job whose worker died is queued again to continue; the queued one still waits
    assert listed[ids["running"]]["status"] == "queued" and "Queued again" in listed[ids["running"]]["message"]
    assert listed[ids["queued"]]["status"] == "queued"
    assert all(job["dataset_version"] == version for job in listed.values())
    library = jobs.get("/api/library").get_json()["loras"]
    assert [entry["file"] for entry in library] == ["my-cat.safetensors"]
    assert jobs.get(f"/api/jobs/{ids['completed']}/samples").get_json()["samples"][0]["step"] == 10

    # a second start changes nothing
    store = JobStore(root / "studio.db")
    rows = [job.public() for job in store.list(limit=100)]
    datasets_app.create_app(_settings(root))
    assert [job.public() for job in JobStore(root / "studio.db").list(limit=100)] == rows
    assert store._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_resume_after_the_upgrade_trains_on_the_recorded_version(legacy):
    root, ids = legacy
    jobs = trainer.create_app(_settings(root)).test_client()
    version = jobs.get(f"/api/jobs/{ids['stopped']}").get_json()["job"]["dataset_version"]
    assert jobs.post(f"/api/jobs/{ids['stopped']}/resume").get_json()["job"]["status"] == "queued"
    from trainer.run_job import training_data

    job = JobStore(root / "studio.db").get(ids["stopped"])
    assert training_data(Workspace(root), job) == root / "trainer" / "datasets" / ".versions" / version


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "studio.db", isolation_level=None)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="newer than this release"):
        migrate(conn)
