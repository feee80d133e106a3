"""The express lane when training cannot go on or captions are missing: with no training worker running the run says
so, with what to do, and goes on by itself once one runs; images the caption service refused are named with why
before they train on the trigger word alone, the run waits for a choice (caption them again, or train anyway, which
it does by itself when nobody answers), and the plan and the finished run say it too."""

from __future__ import annotations

import io
import os

from app import express_captions
from studio.jobs import JobStore
from studio.workspace import Workspace
from tests.test_datasets_support import image_bytes
from tests.test_express import _create, _dead_owner, _drive, _run_worker, stand_in, studio  # noqa: F401 - fixtures
from trainer.recovery import reconcile

WIDTHS = (96, 97, 98, 99, 100, 101)


def _run_with_images(studio, widths=WIDTHS):  # noqa: F811
    settings, app = studio()
    client = app.test_client()
    made = _create(client)
    express_id, dataset_id = made["express"]["id"], made["express"]["dataset"]
    files = [(io.BytesIO(image_bytes(i, size=(w, 80))), f"cat{i}.png") for i, w in enumerate(widths)]
    client.post(f"/api/datasets/{dataset_id}/upload?wait=20", data={"files": files},
                content_type="multipart/form-data")
    assert client.post(f"/api/express/{express_id}/start", json={}).status_code == 202
    return settings, app, client, express_id


def _dead_pid() -> int:
    return int(_dead_owner().split(":")[0])


# -- no training worker ------------------------------------------------------------------------------
def test_a_run_waiting_for_training_says_when_no_worker_runs_and_goes_on_when_one_does(studio):  # noqa: F811
    settings, app, client, express_id = _run_with_images(studio)
    store = JobStore(settings.root / "studio.db")
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["stages"][3]["status"] == "queued"
    notice = run["worker"]
    assert notice and notice["running"] is False, run.get("worker")
    assert "Training has not started: the training worker is not running" in notice["message"]
    assert "restart the studio" in notice["message"] and "python -m trainer.worker" in notice["message"]
    # a worker that died without saying goodbye (its row stays) counts as none
    store.worker_beat(_dead_pid(), "idle")
    assert client.get(f"/api/express/{express_id}").get_json()["worker"]["running"] is False
    # a worker reports in: the notice goes by itself
    store.worker_beat(os.getpid(), "idle")
    assert client.get(f"/api/express/{express_id}").get_json()["worker"] is None
    store.worker_gone(os.getpid())
    # the worker died in the middle of training: the job still reads "running", and the page says it is not
    train_id = run["stages"][3]["job_id"]
    store.claim("train", _dead_owner())
    store.progress(train_id, {"done": 7, "total": 40})
    run = client.get(f"/api/express/{express_id}").get_json()
    assert run["stages"][3]["status"] == "running"
    assert "not progressing: the training worker is not running (training stopped at step 7 of 40)" in \
        run["worker"]["message"]
    assert "continues from its last checkpoint" in run["worker"]["message"]
    # the worker comes back (it recovers the job first, as it does when it starts) and trains it: the page goes on
    reconcile(store, Workspace(settings.root).jobs)
    _run_worker(settings)
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "completed" and run["worker"] is None, run["express"]


# -- captions the service refused --------------------------------------------------------------------
def _refused(studio, stand_in):  # noqa: F811
    stand_in.fail_widths = {97, 99}  # "caption service answered 422: bad image"
    settings, app, client, express_id = _run_with_images(studio)
    run = _drive(app, express_id, lambda r: (r["uncaptioned"] or {}).get("waiting"))
    return settings, app, client, express_id, run


def test_refused_images_hold_the_run_with_how_many_and_why_before_training(studio, stand_in):  # noqa: F811
    settings, app, client, express_id, run = _refused(studio, stand_in)
    missing = run["uncaptioned"]
    assert missing["count"] == 2 and missing["images"] == 6 and sorted(missing["names"]) == ["cat1.png", "cat3.png"]
    assert missing["reasons"][0]["count"] == 2 and "bad image" in missing["reasons"][0]["reason"]
    assert "2 of 6 images train on the trigger word alone" in missing["text"]
    assert missing["trains_anyway_in_s"] > 0
    assert "Caption them again, or train anyway" in run["express"]["message"]
    # it waits: no export, no training job
    for _ in range(3):
        app.extensions["express_driver"].tick()
    run = client.get(f"/api/express/{express_id}").get_json()
    assert run["express"]["phase"] == "caption" and run["stages"][2]["status"] == "waiting"
    assert client.post(f"/api/express/{express_id}/uncaptioned", json={"choice": "later"}).status_code == 422
    # caption them again: still refused, it asks again; once the service takes them, it goes on with every caption
    first = run["stages"][1]["job_id"]
    answer = client.post(f"/api/express/{express_id}/uncaptioned", json={"choice": "caption"})
    assert answer.status_code == 200 and answer.get_json()["uncaptioned"]["waiting"] is False
    run = _drive(app, express_id,
                 lambda r: r["stages"][1]["job_id"] != first and (r["uncaptioned"] or {}).get("waiting"))
    assert run["uncaptioned"]["count"] == 2 and run["stages"][1]["total"] == 2  # only those two were sent again
    stand_in.fail_widths = set()
    client.post(f"/api/express/{express_id}/uncaptioned", json={"choice": "caption"})
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["uncaptioned"] is None and run["dataset"]["captioned"] == 6
    assert not any("trigger word alone" in w for w in run["plan"]["warnings"])
    # not waiting any more: a late choice is refused
    assert client.post(f"/api/express/{express_id}/uncaptioned", json={"choice": "train"}).status_code == 409


def test_training_anyway_says_it_in_the_plan_and_the_finished_run(studio, stand_in):  # noqa: F811
    settings, app, client, express_id, run = _refused(studio, stand_in)
    run = client.post(f"/api/express/{express_id}/uncaptioned", json={"choice": "train"}).get_json()
    assert run["uncaptioned"]["waiting"] is False and run["uncaptioned"]["choice"] == "train"
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    warning = [w for w in run["plan"]["warnings"] if "trigger word alone" in w]
    assert warning and warning[0].startswith("2 of 6 images train on the trigger word alone") and "bad image" in \
        warning[0] and "cat1.png" in warning[0]
    JobStore(settings.root / "studio.db").worker_beat(os.getpid(), "idle")
    _run_worker(settings)
    run = _drive(app, express_id, lambda r: r["express"]["status"] != "running")
    assert run["express"]["status"] == "completed", run["express"]
    assert run["uncaptioned"]["text"].startswith("2 of 6 images trained on the trigger word alone")


def test_nobody_answering_trains_anyway(studio, stand_in, monkeypatch):  # noqa: F811
    settings, app, client, express_id, run = _refused(studio, stand_in)
    monkeypatch.setattr(express_captions, "HOLD_S", 0.0)  # the time to answer is up
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["uncaptioned"]["count"] == 2 and run["uncaptioned"]["waiting"] is False
    assert any("train on the trigger word alone" in w for w in run["plan"]["warnings"])


def test_all_captioned_never_waits(studio):  # noqa: F811
    settings, app, client, express_id = _run_with_images(studio, widths=(96, 97, 98))
    run = _drive(app, express_id, lambda r: r["express"]["phase"] == "train")
    assert run["uncaptioned"] is None
