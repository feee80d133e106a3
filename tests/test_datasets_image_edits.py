"""Crop, rotate and mirror in the gallery: each edit is made again from the original (one re-encoding however
many edits), the original is kept until Revert brings it back byte for byte, exports keep the picture they
were made with, the trash keeps the original with its image, and every bad request changes nothing."""

from __future__ import annotations

import errno
import io
import threading

import numpy as np
import pytest
from PIL import Image

from app import image_edits
from studio import exports
from studio.workspace import Workspace
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, wait_job

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _edit(client, dataset_id, name, **body):
    return client.post(f"/api/datasets/{dataset_id}/images/{name}/edit", json=body)


def _row(client, dataset_id, name) -> dict:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return next(i for i in images if i["name"] == name)


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _marked(size=(96, 64), fmt="PNG", **save) -> bytes:
    """An image whose top-left corner is red, so a rotation's direction shows."""
    image = Image.new("RGB", size, (20, 40, 200))
    image.paste((255, 0, 0), (0, 0, 16, 16))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def test_rotate_keeps_the_original_and_revert_brings_it_back_byte_for_byte(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", _marked()), ("a.txt", b"a red corner")])
    folder = studio_root / "datasets" / dataset_id
    came = (folder / "a.png").read_bytes()
    before = _row(client, dataset_id, "a.png")
    assert before["edits"] == [] and before["rev"] and before["original_size"] is None
    client.get(f"/api/datasets/{dataset_id}/thumbs/a.png")

    rotated = _edit(client, dataset_id, "a.png", op="rotate", degrees=90, rev=before["rev"])
    assert rotated.status_code == 200, rotated.get_json()
    row = rotated.get_json()
    assert (row["width"], row["height"]) == (64, 96) and row["edits"] == ["rotated"]
    assert row["rev"] != before["rev"] and row["original_size"] == [96, 64] and row["caption"] == "a red corner"
    assert _pixels((folder / "a.png").read_bytes())[0, -1].tolist() == [255, 0, 0]  # clockwise: top-left -> top-right
    assert (folder / ".originals" / "a.png").read_bytes() == came
    assert _row(client, dataset_id, "a.png") == row
    thumb = client.get(f"/api/datasets/{dataset_id}/thumbs/a.png")
    with Image.open(io.BytesIO(thumb.data)) as shown:
        assert shown.height > shown.width  # made again for the new file

    kept = client.get(f"/api/datasets/{dataset_id}/images/a.png/original")  # to compare with
    assert kept.status_code == 200 and kept.data == came
    reverted = _edit(client, dataset_id, "a.png", op="revert").get_json()
    assert (folder / "a.png").read_bytes() == came and not (folder / ".originals" / "a.png").exists()
    assert reverted == before
    assert client.get(f"/api/datasets/{dataset_id}/images/a.png/original").status_code == 404
    again = _edit(client, dataset_id, "a.png", op="revert")
    assert again.status_code == 409 and "no edits" in again.get_json()["error"]


def test_edits_are_made_from_the_original_once(client, dataset_id, studio_root):
    upload(client, dataset_id, [("p.jpg", _marked((200, 120), "JPEG", quality=95))])
    folder = studio_root / "datasets" / dataset_id
    original = Image.open(io.BytesIO((folder / "p.jpg").read_bytes())).convert("RGB")
    _edit(client, dataset_id, "p.jpg", op="rotate", degrees=-90)
    _edit(client, dataset_id, "p.jpg", op="crop", box=[10, 20, 100, 150])
    row = _edit(client, dataset_id, "p.jpg", op="flip", axis="horizontal").get_json()
    assert (row["width"], row["height"]) == (100, 150) and row["edits"] == ["rotated", "cropped", "mirrored"]
    expected = (original.transpose(Image.Transpose.ROTATE_90).crop((10, 20, 110, 170))
                .transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    difference = np.abs(_pixels((folder / "p.jpg").read_bytes()) - np.asarray(expected, dtype=np.int16))
    assert difference.mean() < 2.0  # one JPEG generation at quality 95, not three
    assert (folder / ".originals" / "p.jpg").is_file()


def test_crop_coordinates_are_those_of_the_picture_as_shown(client, dataset_id, studio_root):
    upload(client, dataset_id, [("o.jpg", image_bytes(4, size=(120, 80), fmt="JPEG", exif_orientation=6))])
    assert _row(client, dataset_id, "o.jpg")["width"] == 80  # EXIF: shown turned, 80 wide
    row = _edit(client, dataset_id, "o.jpg", op="crop", box=[0, 0, 80, 100]).get_json()
    assert (row["width"], row["height"]) == (80, 100)
    with Image.open(studio_root / "datasets" / dataset_id / "o.jpg") as saved:
        assert saved.size == (80, 100) and saved.getexif().get(0x0112) in (None, 1)  # no turn left to apply


@pytest.mark.parametrize("body, status, words", [
    ({"op": "spin"}, 422, "'op' must be"),
    ({"op": "rotate", "degrees": 45}, 422, "90 (clockwise)"),
    ({"op": "rotate", "degrees": True}, 422, "90 (clockwise)"),
    ({"op": "rotate", "degrees": [90]}, 422, "90 (clockwise)"),
    ({"op": "flip", "axis": ["horizontal"]}, 422, "'axis'"),
    ({"op": ["crop"]}, 422, "'op' must be"),
    ({"op": "flip", "axis": "diagonal"}, 422, "'axis'"),
    ({"op": "crop", "box": [0, 0, 10]}, 422, "[left, top, width, height]"),
    ({"op": "crop", "box": [0, 0, "a", 10]}, 422, "[left, top, width, height]"),
    ({"op": "crop", "box": [0, 0, 20, 20]}, 422, "keep at least 64"),
    ({"op": "crop", "box": [40, 0, 80, 64]}, 422, "outside the 96×64 image"),
    ({"op": "crop", "box": [-1, 0, 64, 64]}, 422, "outside"),
    ({"op": "rotate", "degrees": 90, "rev": 7}, 422, "'rev'"),
    ({"op": "rotate", "degrees": 90, "rev": "0123456789ab"}, 409, "changed in another tab"),
    ({"op": "revert"}, 409, "no edits"),
])
def test_a_bad_edit_says_why_and_changes_nothing(client, dataset_id, studio_root, body, status, words):
    upload(client, dataset_id, [("a.png", _marked())])
    folder = studio_root / "datasets" / dataset_id
    came, before = (folder / "a.png").read_bytes(), _row(client, dataset_id, "a.png")
    response = _edit(client, dataset_id, "a.png", **body)
    assert response.status_code == status and words in response.get_json()["error"], response.get_json()
    if status == 409 and "rev" in body:
        assert response.get_json()["current"] == before  # the client shows what is there now
    assert (folder / "a.png").read_bytes() == came and _row(client, dataset_id, "a.png") == before
    assert not (folder / ".originals").exists()


def test_names_are_confined_and_only_plain_formats_are_edited(client, dataset_id):
    upload(client, dataset_id, [("a.png", _marked())])
    for name in ("..%2F..%2Fsecret.png", "missing.png", "a.txt", ".originals%2Fa.png"):
        response = _edit(client, dataset_id, name, op="rotate", degrees=90)
        assert response.status_code in (400, 404), (name, response.get_json())
        assert client.get(f"/api/datasets/{dataset_id}/images/{name}/original").status_code in (400, 404), name
    assert _edit(client, "nope", "a.png", op="rotate", degrees=90).status_code == 404
    with pytest.raises(image_edits.ApiError, match="Only JPEG, PNG, WebP, HEIC, AVIF, TIFF and BMP images"):
        image_edits.edit_image(_AnyName(), "photo.gif", {"op": "rotate", "degrees": 90})


class _AnyName:
    """A dataset where every name is an image (as a GIF would be if the studio took them)."""

    def image_path(self, name):
        return name


def test_an_export_keeps_the_picture_it_was_made_with(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", _marked()), ("a.txt", b"tok, a corner")])
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "corner"}).status_code == 202
    version = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")["result"]["version"]
    folder = exports.version_dir(Workspace(studio_root), version)
    _edit(client, dataset_id, "a.png", op="crop", box=[0, 0, 64, 64])
    _edit(client, dataset_id, "a.png", op="revert")
    _edit(client, dataset_id, "a.png", op="rotate", degrees=180)
    assert exports.hash_folder(folder) == version  # links to the old file, never written into


def test_a_deleted_edited_image_comes_back_with_its_original(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", _marked()), ("b.png", image_bytes(2))])
    folder = studio_root / "datasets" / dataset_id
    came = (folder / "a.png").read_bytes()
    _edit(client, dataset_id, "a.png", op="flip", axis="vertical")
    batch = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png"]}).get_json()["trash"]
    assert not (folder / ".originals" / "a.png").exists()
    upload(client, dataset_id, [("a.png", image_bytes(9))])  # the name is taken meanwhile
    restored = client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore").get_json()
    assert restored["renamed"] == {"a.png": "a_2.png"}
    assert _row(client, dataset_id, "a_2.png")["edits"] == ["mirrored"]
    _edit(client, dataset_id, "a_2.png", op="revert")
    assert (folder / "a_2.png").read_bytes() == came


def test_flags_follow_the_edit(client, dataset_id):
    upload(client, dataset_id, [("big.png", image_bytes(1, size=(600, 600)))])
    row = _edit(client, dataset_id, "big.png", op="crop", box=[0, 0, 300, 300]).get_json()
    assert row["flags"]["small"]["min_side"] == 512
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["flag_counts"]["small"] == 1
    assert _edit(client, dataset_id, "big.png", op="revert").get_json()["flags"] == {}


def test_a_full_disk_leaves_the_image_as_it_was(client, dataset_id, studio_root, monkeypatch):
    upload(client, dataset_id, [("a.png", _marked())])
    folder = studio_root / "datasets" / dataset_id
    came, before = (folder / "a.png").read_bytes(), _row(client, dataset_id, "a.png")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_edits, "atomic_write_bytes", full)
    response = _edit(client, dataset_id, "a.png", op="rotate", degrees=90)
    assert response.status_code == 507 and "full" in response.get_json()["error"].lower()
    assert (folder / "a.png").read_bytes() == came and _row(client, dataset_id, "a.png") == before
    monkeypatch.undo()
    _edit(client, dataset_id, "a.png", op="rotate", degrees=90)  # space again: the edit works, and so does revert
    _edit(client, dataset_id, "a.png", op="revert")
    assert (folder / "a.png").read_bytes() == came


def test_an_edit_cut_off_before_it_was_recorded_never_costs_the_original(client, dataset_id, studio_root,
                                                                          monkeypatch):
    """The process dies between writing the edited picture and recording the edit: the next edit must not take the
    edited picture for the original, or Revert would never bring the upload back."""
    from app.store import Dataset

    upload(client, dataset_id, [("a.png", _marked())])
    folder = studio_root / "datasets" / dataset_id
    came = (folder / "a.png").read_bytes()

    def killed(self, meta):
        raise SystemExit("the process ended here")

    monkeypatch.setattr(Dataset, "save_meta", killed)
    with pytest.raises(SystemExit):
        _edit(client, dataset_id, "a.png", op="rotate", degrees=90)
    monkeypatch.undo()
    assert (folder / "a.png").read_bytes() != came and (folder / ".originals" / "a.png").read_bytes() == came
    assert _row(client, dataset_id, "a.png")["edits"] == []  # not recorded
    assert _edit(client, dataset_id, "a.png", op="flip").status_code == 200
    assert (folder / ".originals" / "a.png").read_bytes() == came
    assert _edit(client, dataset_id, "a.png", op="revert").status_code == 200
    assert (folder / "a.png").read_bytes() == came


def test_edits_at_the_same_time_both_land(ds_app, client, dataset_id):
    upload(client, dataset_id, [("a.png", _marked((128, 128)))])
    results = []

    def rotate():
        results.append(_edit(ds_app.test_client(), dataset_id, "a.png", op="rotate", degrees=90).status_code)

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200, 200]
    record = _row(client, dataset_id, "a.png")
    assert record["edits"] == ["rotated"]
    meta = ds_app.extensions["dataset_store"].get(dataset_id).meta()["images"]["a.png"]
    assert [e["degrees"] for e in meta["edits"]] == [90, 90]


def test_no_edit_while_an_export_runs_and_an_export_sees_an_edit_it_missed(ds_app, client, dataset_id, monkeypatch):
    from app import export

    upload(client, dataset_id, [("a.png", _marked()), ("b.png", image_bytes(2, size=(96, 96)))])
    jobs = ds_app.extensions["job_store"]
    running, _ = jobs.create("export", name="busy", dataset=dataset_id)  # queued counts as running
    refused = _edit(client, dataset_id, "a.png", op="rotate", degrees=90)
    assert refused.status_code == 409 and "export of this dataset is running" in refused.get_json()["error"]
    jobs.finish(running.id, "completed", message="Exported.")

    # an edit that lands between the export's start and its end (it checked before the export began)
    place = export.training_copy

    def edited_meanwhile(source, folder, stem):
        placed = place(source, folder, stem)
        if source.name == "b.png":
            with ds_app.app_context(), monkeypatch.context() as past_the_check:
                past_the_check.setattr(image_edits, "ACTIVE", ())
                image_edits.edit_image(ds_app.extensions["dataset_store"].get(dataset_id), "a.png",
                                       {"op": "rotate", "degrees": 180})
        return placed

    monkeypatch.setattr(export, "training_copy", edited_meanwhile)
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "race"}).status_code == 202
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "failed" and "1 image changed while the export ran (a.png" in job["error"], job
    monkeypatch.undo()
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "race"}).status_code == 202
    assert wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")["status"] == "completed"


def test_a_crop_box_that_is_not_a_number_is_refused(client, dataset_id):
    upload(client, dataset_id, [("a.png", _marked())])
    body = '{"op": "crop", "box": [0, 0, NaN, Infinity]}'
    response = client.post(f"/api/datasets/{dataset_id}/images/a.png/edit", data=body, content_type="application/json")
    assert response.status_code in (400, 422) and response.get_json()["error"]


def test_an_image_broken_on_disk_since_its_import_says_so(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", _marked())])
    (studio_root / "datasets" / dataset_id / "a.png").write_bytes(b"\x89PNG broken")
    response = _edit(client, dataset_id, "a.png", op="rotate", degrees=90)
    assert response.status_code == 422 and "cannot be read as an image any more" in response.get_json()["error"]
    assert not (studio_root / "datasets" / dataset_id / ".originals").exists()
