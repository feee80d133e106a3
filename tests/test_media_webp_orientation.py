"""A WebP turned by its EXIF orientation: Chromium shows a WebP as its pixels lie (it reads the orientation of a
JPEG, a PNG and an AVIF, not of a WebP), while the studio measures and crops it upright. Such a file is not one a
page can show as it is (imaging.shown_upright_by_browsers): it gets an upright JPEG view, like a HEIC."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from app import imaging
from tests import test_datasets_support as support
from tests.test_datasets_support import upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _saved(tmp_path, name: str, fmt: str, orientation: int | None) -> Path:
    picture = Image.new("RGB", (80, 60), (20, 40, 200))
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    path = tmp_path / name
    picture.save(path, fmt, **extra)
    return path


@pytest.mark.parametrize("orientation", [6, 8, 3, 2])
def test_a_turned_webp_is_not_shown_as_it_is(tmp_path, orientation):
    assert not imaging.shown_upright_by_browsers(_saved(tmp_path, "phone.webp", "WEBP", orientation))


@pytest.mark.parametrize(("name", "fmt", "orientation"), [
    ("plain.webp", "WEBP", None), ("upright.webp", "WEBP", 1), ("turned.jpg", "JPEG", 6), ("turned.png", "PNG", 6)])
def test_files_browsers_show_upright_are_shown_as_they_are(tmp_path, name, fmt, orientation):
    assert imaging.shown_upright_by_browsers(_saved(tmp_path, name, fmt, orientation))


def test_a_heic_or_a_damaged_webp_follows_the_name_rule(tmp_path):
    damaged = tmp_path / "cut.webp"
    damaged.write_bytes(b"RIFF\x10\x00\x00\x00WEBPVP8 ")
    assert imaging.shown_upright_by_browsers(damaged)  # the page shows what it can; nothing is refused here
    assert not imaging.shown_upright_by_browsers(tmp_path / "IMG_0001.heic")


def test_the_original_of_an_edited_turned_webp_is_shown_upright(client, dataset_id, tmp_path):
    """Held down, "original" shows the upload: for a turned WebP an upright JPEG of it, not the file on its side."""
    data = _saved(tmp_path, "phone.webp", "WEBP", 6).read_bytes()
    assert upload(client, dataset_id, [("phone.webp", data)])["status"] == "completed"
    edited = client.post(f"/api/datasets/{dataset_id}/images/phone.webp/edit", json={"op": "flip"})
    assert edited.status_code == 200 and [edited.get_json()["width"], edited.get_json()["height"]] == [60, 80]
    response = client.get(f"/api/datasets/{dataset_id}/images/phone.webp/original")
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.data)) as shown:
        assert shown.format == "JPEG" and shown.size == (60, 80)
    plain = _saved(tmp_path, "plain.webp", "WEBP", None).read_bytes()
    assert upload(client, dataset_id, [("plain.webp", plain)])["status"] == "completed"
    client.post(f"/api/datasets/{dataset_id}/images/plain.webp/edit", json={"op": "flip"})
    response = client.get(f"/api/datasets/{dataset_id}/images/plain.webp/original")
    assert response.status_code == 200 and response.data == plain  # a WebP without a turn is sent as it is


def test_a_turned_webp_is_shown_upright_in_the_editor(client, dataset_id, tmp_path):
    """The editor's picture (the crop box lies over it) is the upright JPEG, as the tile and its measured size are."""
    data = _saved(tmp_path, "turned.webp", "WEBP", 6).read_bytes()
    assert upload(client, dataset_id, [("turned.webp", data)])["status"] == "completed"
    response = client.get(f"/api/datasets/{dataset_id}/images/turned.webp")
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.data)) as shown:
        assert shown.format == "JPEG" and shown.size == (60, 80)
    plain = _saved(tmp_path, "plain.webp", "WEBP", None).read_bytes()
    upload(client, dataset_id, [("plain.webp", plain)])
    assert client.get(f"/api/datasets/{dataset_id}/images/plain.webp").data == plain  # as it is
