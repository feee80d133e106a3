"""An export the dataset changes under says so in one sentence: an image deleted while it runs fails it with that
image's name (not an errno and a path), an export is refused while auto-captioning still writes the captions it
would take, and the images it exports without a caption are named when it ends."""

from __future__ import annotations

from app import export
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, wait_job

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _export(client, dataset_id: str) -> dict:
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cat"}).status_code == 202
    return wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")


def _deleting_while_placing(client, dataset_id, monkeypatch, victim: str):
    place, calls = export.training_copy, []

    def placed(source, folder, stem):
        calls.append(source.name)
        if len(calls) == 1:
            deleted = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": [victim]})
            assert deleted.get_json()["deleted"] == [victim]
        return place(source, folder, stem)

    monkeypatch.setattr(export, "training_copy", placed)


def test_an_image_deleted_before_its_turn_fails_the_export_with_its_name(client, dataset_id, monkeypatch):
    upload(client, dataset_id, [(f"c{i}.png", image_bytes(i)) for i in range(30)])
    _deleting_while_placing(client, dataset_id, monkeypatch, "c29.png")
    job = _export(client, dataset_id)
    assert job["status"] == "failed"
    assert job["message"] == "c29.png was deleted while the export ran: export again."


def test_an_image_deleted_after_its_turn_is_named_as_deleted(client, dataset_id, monkeypatch):
    upload(client, dataset_id, [(f"c{i}.png", image_bytes(i)) for i in range(3)])
    place = export.training_copy

    def placed(source, folder, stem):
        result = place(source, folder, stem)
        if source.name == "c2.png":  # the last one: every image is placed when it goes
            client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["c0.png"]})
        return result

    monkeypatch.setattr(export, "training_copy", placed)
    job = _export(client, dataset_id)
    assert job["status"] == "failed"
    assert job["message"] == "1 image changed while the export ran (c0.png, deleted): export again."


def test_no_export_while_auto_captioning_runs(ds_app, client, dataset_id):
    upload(client, dataset_id, [(f"c{i}.png", image_bytes(i)) for i in range(3)])
    jobs = ds_app.extensions["job_store"]
    running, _ = jobs.create("caption", dataset=dataset_id, total=3)  # queued counts as running
    refused = client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cat"})
    assert refused.status_code == 409
    assert refused.get_json()["error"] == ("Auto-captioning of this dataset is still running (0 of 3 images done): "
                                           "export when it has finished, or stop it first.")
    jobs.finish(running.id, "completed", message="Captioned 3 of 3 images.")
    assert _export(client, dataset_id)["status"] == "completed"


def test_the_images_exported_without_a_caption_are_named(client, dataset_id):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a red cat"), ("b.png", image_bytes(2)),
                                ("c.png", image_bytes(3)), ("c.txt", b"  \n")])
    job = _export(client, dataset_id)
    assert job["status"] == "completed" and job["result"]["uncaptioned"] == ["b.png", "c.png"]
    assert job["message"].endswith("; 2 without a caption (b.png, c.png): trained on the trigger word alone.")
    client.patch(f"/api/datasets/{dataset_id}", json={"trigger_word": ""})
    job = _export(client, dataset_id)
    assert job["message"].endswith("; 2 without a caption (b.png, c.png): trained with no caption.")
    client.put(f"/api/datasets/{dataset_id}/captions/b.png", json={"caption": "a dog"})
    client.put(f"/api/datasets/{dataset_id}/captions/c.png", json={"caption": "a bird"})
    job = _export(client, dataset_id)
    assert job["result"]["uncaptioned"] == [] and "without a caption" not in job["message"]
