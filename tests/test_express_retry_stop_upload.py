"""The express lane's edges: Retry refuses a run that cannot go on (and leaves it as it was), Stop stops the stage that
runs now even when the caller's view of the run is a moment old, and a run waiting for its files says when the last
piece of them arrived (another tab may be sending them)."""

from __future__ import annotations

import io

import pytest

from app import express
from studio.jobs import JobStateError, JobStore
from tests.test_datasets_support import image_bytes
from tests.test_express import _create, _drive, _upload_session, _zip, stand_in, studio  # noqa: F401 - fixtures


def _with_images(client, dataset_id: str, count: int = 2) -> None:
    client.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                data={"files": [(io.BytesIO(image_bytes(i)), f"c{i}.png") for i in range(count)]},
                content_type="multipart/form-data")


def test_retry_of_a_run_whose_dataset_was_deleted_is_refused_and_changes_nothing(studio):  # noqa: F811
    settings, app = studio()
    client = app.test_client()
    made = _create(client)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    _with_images(client, dataset_id)
    client.post(f"/api/express/{express_id}/start", json={})
    _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert client.delete(f"/api/datasets/{dataset_id}").status_code in (200, 202, 204)
    run = client.get(f"/api/express/{express_id}").get_json()["express"]
    assert run["status"] == "stopped" and not run["resumable"]
    answer = client.post(f"/api/express/{express_id}/retry")
    assert answer.status_code == 409, answer.get_json()
    assert "cannot be retried" in answer.get_json()["error"] and "dataset was deleted" in answer.get_json()["error"]
    after = JobStore(settings.root / "studio.db").get(express_id)
    assert after.status == "stopped" and after.message == express.DATASET_DELETED  # not running a stage on nothing


def test_stop_stops_the_stage_that_runs_now_not_the_one_the_caller_saw(studio, stand_in):  # noqa: F811
    settings, app = studio()
    client = app.test_client()
    made = _create(client)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    _with_images(client, dataset_id, count=8)
    store = JobStore(settings.root / "studio.db")
    seen_at_upload = store.get(express_id)  # what a request read just before the chain moved on
    stand_in.block_width = 64  # the caption stage is busy with the first picture
    client.post(f"/api/express/{express_id}/start", json={})
    assert stand_in.blocked.wait(10)
    with app.app_context():
        stopped = express.stop(seen_at_upload)
    caption = express_stage(app, express_id, "caption")
    assert caption.stopping or caption.status == "stopped", caption  # the caption job was asked to stop
    assert stopped.status == "running"  # and the run ends when it has (as Stop does for any running stage)
    stand_in.delay = 0.4  # the rest take a while: the caption job sees the stop (it looks about once a second)
    stand_in.release.set()
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "stopped" and "Stopped during caption" in run["express"]["message"]
    assert [s["status"] for s in run["stages"][1:]] == ["stopped", "waiting", "waiting"]


def express_stage(app, express_id: str, stage: str):
    with app.app_context():
        from app import context

        return express.stages_of(context.jobs().get(express_id))[stage]


def test_a_run_waiting_for_its_files_says_when_the_last_piece_arrived(studio):  # noqa: F811
    _, app = studio()
    client = app.test_client()
    made = _create(client)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    assert made["upload_seen_s"] is None  # nothing has arrived yet
    _upload_session(client, dataset_id, "cats.zip", _zip(2))  # another tab sends the files
    waiting = client.get(f"/api/express/{express_id}").get_json()
    assert waiting["express"]["phase"] == "upload" and 0 <= waiting["upload_seen_s"] < 60


def test_stop_of_a_finished_run_still_says_so(studio):  # noqa: F811
    settings, app = studio()
    client = app.test_client()
    made = _create(client)
    JobStore(settings.root / "studio.db").finish(made["express"]["id"], "failed", error="x", resumable=True)
    with app.app_context():
        from app import context

        with pytest.raises(JobStateError, match="already failed"):
            express.stop(context.jobs().get(made["express"]["id"]))


def test_a_run_stopped_before_its_files_came_waits_for_them_again_on_retry(studio):  # noqa: F811
    """Stopped (through the API) while it waited for its files, its Retry ran the import on nothing and failed with
    "No usable images"; it goes back to waiting for the files, and they start it as the first time."""
    settings, app = studio()
    client = app.test_client()
    made = _create(client)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    assert client.post(f"/api/express/{express_id}/stop").status_code == 200
    assert client.post(f"/api/express/{express_id}/retry").status_code == 200
    run = client.get(f"/api/express/{express_id}").get_json()["express"]
    assert (run["status"], run["phase"]) == ("running", "upload")
    _with_images(client, dataset_id)
    assert client.post(f"/api/express/{express_id}/start", json={}).status_code == 202
    run = _drive(app, express_id, lambda r: r["express"]["phase"] != "import")
    assert run["express"]["status"] == "running" and run["express"]["phase"] in ("caption", "export", "train")
