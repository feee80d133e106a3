"""An export is the dataset of one moment, and two things done at once stay correct: a bulk caption change while it
runs is not half in it, two tabs starting an export at once start one, and a version deleted while an export with the
same content finishes never leaves the export name pointing at nothing."""

from __future__ import annotations

import threading
import time

from app import export
from studio import exports
from studio.jobs import ACTIVE
from studio.workspace import Workspace
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, wait_job

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _export(client, dataset_id: str, name: str = "cats") -> dict:
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": name}).status_code == 202
    return wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")


def test_a_bulk_caption_change_while_exporting_is_not_half_in_the_export(client, dataset_id, studio_root,
                                                                         monkeypatch):
    upload(client, dataset_id, [(f"c{i}.png", image_bytes(i)) for i in range(12)]
           + [(f"c{i}.txt", b"a cat") for i in range(12)])
    place, placed = export.training_copy, []

    def placing(source, folder, stem):
        placed.append(source.name)
        if len(placed) == 6:  # half way: every caption changes at once
            changed = client.post(f"/api/datasets/{dataset_id}/captions/replace",
                                  json={"find": "cat", "replace": "dog", "apply": True})
            assert changed.get_json()["images"] == 12
        return place(source, folder, stem)

    monkeypatch.setattr(export, "EXPORT_THREADS", 1)
    monkeypatch.setattr(export, "training_copy", placing)
    job = _export(client, dataset_id)
    assert job["status"] == "completed", job
    out = studio_root / "trainer" / "datasets" / "cats"
    assert {(out / f"c{i}.txt").read_text().strip() for i in range(12)} == {"tok, a cat"}  # as it was when it began
    monkeypatch.setattr(export, "training_copy", place)
    again = _export(client, dataset_id)
    assert again["result"]["version"] != job["result"]["version"]
    assert {(out / f"c{i}.txt").read_text().strip() for i in range(12)} == {"tok, a dog"}


def test_two_tabs_starting_an_export_at_once_start_one(ds_app, client, dataset_id, monkeypatch):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    executor = ds_app.extensions["job_executor"]
    submit, answers, other = executor.submit, [], []

    def second_tab():
        answers.append(ds_app.test_client().post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"})
                       .status_code)

    def submitting(kind, *args, **kwargs):
        if kind == "export" and not other:  # the other tab's request comes between this one's check and its job
            other.append(threading.Thread(target=second_tab))
            other[0].start()
            other[0].join(1.0)
        return submit(kind, *args, **kwargs)

    monkeypatch.setattr(executor, "submit", submitting)
    answers.append(client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"}).status_code)
    other[0].join(10)
    assert sorted(answers) == [202, 409]
    wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")


def test_deleting_a_version_while_an_export_of_the_same_content_ends_leaves_the_name_whole(ds_app, client, dataset_id,
                                                                                           studio_root, monkeypatch):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat")])
    first = _export(client, dataset_id)["result"]["version"]
    client.put(f"/api/datasets/{dataset_id}/captions/a.png", json={"caption": "a dog"})
    assert _export(client, dataset_id)["result"]["version"] != first
    client.put(f"/api/datasets/{dataset_id}/captions/a.png", json={"caption": "a cat"})  # back to the first's content
    jobs, count = ds_app.extensions["job_store"], exports.freed_by_deleting
    started = []

    def counting(workspace, versions):  # the delete has checked that no name points at the version
        asking = threading.Thread(target=lambda: started.append(  # another request: not inside this one's context
            ds_app.test_client().post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"}).get_json()["id"]))
        asking.start()
        asking.join(10)
        deadline = time.monotonic() + 2
        while jobs.get(started[0]).status in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.02)
        return count(workspace, versions)

    monkeypatch.setattr(exports, "freed_by_deleting", counting)
    assert client.delete(f"/api/exports/{first}").status_code == 200
    monkeypatch.setattr(exports, "freed_by_deleting", count)
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["id"] == started[0] and job["status"] == "completed" and job["result"]["version"] == first
    workspace = Workspace(studio_root)
    assert exports.resolve(workspace, "cats") == first
    assert (workspace.exports / "cats" / "a.txt").read_text().strip() == "tok, a cat"  # stored again, not dangling
