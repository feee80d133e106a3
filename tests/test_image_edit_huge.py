"""Huge images: MAX_IMAGE_PIXELS is the limit. Raised for a 100-megapixel camera (over Pillow's own warning at
89 million pixels), such a photo is imported and can be cropped and rotated; over MAX_IMAGE_PIXELS it is refused
with the limit that refused it. Pillow's limit is lowered here to stand for 89 million on a small picture."""

from __future__ import annotations

import io

from PIL import Image

import app as datasets_app
from tests.test_datasets_support import upload


def _png(size) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, (30, 60, 160))
    image.paste((230, 20, 20), (0, 0, 64, 64))
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_an_image_over_pillows_warning_but_within_the_limit_is_imported_and_edited(make_settings, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150_000)  # stands for Pillow's 89 million
    client = datasets_app.create_app(make_settings(MAX_IMAGE_PIXELS=200_000)).test_client()
    did = client.post("/api/datasets", json={"name": "Medium format"}).get_json()["id"]
    job = upload(client, did, [("gfx.png", _png((480, 360)))])  # 172,800 pixels: over Pillow's, within ours
    assert job["result"]["imported"] == ["gfx.png"], job["result"]
    rotated = client.post(f"/api/datasets/{did}/images/gfx.png/edit", json={"op": "rotate", "degrees": 90})
    assert rotated.status_code == 200, rotated.get_json()
    assert (rotated.get_json()["width"], rotated.get_json()["height"]) == (360, 480)
    cropped = client.post(f"/api/datasets/{did}/images/gfx.png/edit", json={"op": "crop", "box": [0, 0, 200, 300]})
    assert cropped.status_code == 200 and cropped.get_json()["width"] == 200, cropped.get_json()

    job = upload(client, did, [("over.png", _png((500, 500)))])  # 250,000 pixels: over MAX_IMAGE_PIXELS
    reason = job["result"]["skipped"][0]["reason"]
    assert "250,000 pixels" in reason and "200,000" in reason and "MAX_IMAGE_PIXELS" in reason


def test_an_image_pillow_will_not_open_says_so(make_settings, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150_000)  # opens at most 300,000 pixels
    client = datasets_app.create_app(make_settings(MAX_IMAGE_PIXELS=400_000)).test_client()
    did = client.post("/api/datasets", json={"name": "Panorama"}).get_json()["id"]
    job = upload(client, did, [("pano.png", _png((600, 550)))])  # 330,000 pixels
    reason = job["result"]["skipped"][0]["reason"]
    assert "can open (300,000)" in reason and "400,000" not in reason, reason
