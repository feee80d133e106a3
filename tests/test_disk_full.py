"""A full disk: every service answers 507 with one sentence (which volume, how much is free, what can
go), a dataset job fails with the same sentence instead of an errno, and nothing written before is
changed or left half-written."""

from __future__ import annotations

import errno
import os

import pytest

import trainer
from studio.disk import disk_full_message, is_disk_full
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, wait_job

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def full_disk(monkeypatch):
    """Writes reach the disk and fail there, as they do when the volume fills up (atomic writes fsync)."""
    real, state = os.fsync, {"full": False}

    def fsync(fd):
        if state["full"]:
            raise FULL
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return state


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_a_caption_saved_on_a_full_disk_is_refused_and_the_old_one_kept(client, dataset_id, studio_root,
                                                                        full_disk):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    url = f"/api/datasets/{dataset_id}/captions/a.png"
    saved = client.put(url, json={"caption": "a cat"}).get_json()
    full_disk["full"] = True
    refused = client.put(url, json={"caption": "a dog", "base_version": saved["version"]})
    assert refused.status_code == 507
    message = refused.get_json()["error"]
    assert message.startswith("The disk is full (") and "free" in message and "nothing earlier was changed" in message
    folder = studio_root / "datasets" / dataset_id
    assert (folder / "a.txt").read_text() == "a cat" and _leftovers(folder) == []
    full_disk["full"] = False
    again = client.put(url, json={"caption": "a dog", "base_version": saved["version"]})
    assert again.status_code == 200 and (folder / "a.txt").read_text() == "a dog"


def test_an_export_on_a_full_disk_fails_with_the_sentence_and_keeps_the_last_version(client, dataset_id,
                                                                                     studio_root, full_disk):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat")])
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"}).status_code == 202
    first = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert first["status"] == "completed"
    export = studio_root / "trainer" / "datasets" / "cats"
    before = sorted(p.name for p in export.iterdir())

    client.put(f"/api/datasets/{dataset_id}/captions/a.png", json={"caption": "a black cat"})
    full_disk["full"] = True
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"}).status_code == 202
    failed = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert failed["status"] == "failed" and failed["error"].startswith("The disk is full (")
    assert "Unexpected error" not in failed["error"]
    assert sorted(p.name for p in export.iterdir()) == before and (export / "a.txt").read_text().strip() == "tok, a cat"


def test_the_trainer_answers_507_too_and_other_errors_stay_500(make_settings, monkeypatch):
    app = trainer.create_app(make_settings())

    @app.get("/api/_probe/<kind>")
    def probe(kind):
        raise FULL if kind == "full" else PermissionError(errno.EACCES, "Permission denied")

    probe_client = app.test_client()
    full = probe_client.get("/api/_probe/full")
    assert full.status_code == 507 and full.get_json()["error"].startswith("The disk is full")
    other = probe_client.get("/api/_probe/denied")
    assert other.status_code == 500 and "PermissionError" in other.get_json()["error"]


def test_the_sentence_names_the_volume_and_its_free_space(tmp_path):
    message = disk_full_message(tmp_path, "The checkpoint")
    assert str(tmp_path) in message and " free)" in message and "The checkpoint was not saved" in message
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")) and not is_disk_full(ValueError("x"))
    assert "is full" in disk_full_message(tmp_path / "gone")


def test_an_upload_on_a_full_disk_fails_with_the_sentence_and_can_be_retried(client, dataset_id,
                                                                             studio_root, full_disk):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    full_disk["full"] = True
    failed = upload(client, dataset_id, [("b.png", image_bytes(2)), ("c.png", image_bytes(3))])
    assert failed["status"] == "failed" and failed["error"].startswith("The disk is full ("), failed
    names = [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]
    assert "a.png" in names
    full_disk["full"] = False
    # the image the failed import had moved in but could not record is recorded by the next import
    again = upload(client, dataset_id, [("c.png", image_bytes(3))])
    assert again["status"] == "completed" and again["result"]["adopted"] == ["b.png"]
    assert "recovered b.png that an interrupted import had placed" in again["message"]
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert sorted(i["name"] for i in images) == ["a.png", "b.png", "c.png"]
    assert client.get(f"/api/datasets/{dataset_id}/thumbs/b.png").status_code == 200
    assert _leftovers(studio_root / "datasets" / dataset_id) == []


def test_a_thumbnail_that_cannot_be_stored_shows_the_image_itself(client, dataset_id, studio_root, full_disk):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    folder = studio_root / "datasets" / dataset_id
    (stored,) = [p for p in folder.rglob("a.png.webp")]
    stored.unlink()  # made at import; gone, so the gallery makes it again
    full_disk["full"] = True
    shown = client.get(f"/api/datasets/{dataset_id}/thumbs/a.png")
    assert shown.status_code == 200 and shown.mimetype == "image/png" and shown.data == (folder / "a.png").read_bytes()
    assert not stored.exists() and _leftovers(folder) == []
    full_disk["full"] = False
    again = client.get(f"/api/datasets/{dataset_id}/thumbs/a.png")
    assert again.status_code == 200 and again.mimetype == "image/webp" and stored.is_file()


def test_a_training_process_stopped_by_a_full_disk_says_so(tmp_path):
    from trainer.run_job import _crash_message

    message = _crash_message(FULL, tmp_path)
    assert message.startswith("The disk is full (") and message.endswith("Resume the job then.")


def test_images_a_killed_import_left_unrecorded_are_recorded_by_the_next(client, dataset_id,
                                                                        studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    folder = studio_root / "datasets" / dataset_id
    (folder / "moved-in.png").write_bytes(image_bytes(4))  # moved in, then the process was killed
    (folder / "half.png").write_bytes(image_bytes(5)[:40])  # cut short: it does not decode
    done = upload(client, dataset_id, [("d.png", image_bytes(6))])
    assert done["result"]["adopted"] == ["moved-in.png"] and done["result"]["imported"] == ["d.png"]
    names = sorted(i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"])
    assert names == ["a.png", "d.png", "moved-in.png"] and (folder / "half.png").exists()  # left, not deleted
