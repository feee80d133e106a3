"""Odd images: a file named like a photo that holds a TGA or SGI picture (what an old 3D program or a game export
writes) is refused with what to do, not imported as a ".jpg" that no page can show (and its rarely used decoder is
never run on an upload); a long strip (a 70,000 x 8 panorama slice) is sent to the captioner as a JPEG, which holds
at most 65,500 pixels a side."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app import imaging
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _picture(fmt: str, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["TGA", "SGI"])
def test_another_kind_of_image_named_like_a_photo_is_refused_with_what_to_do(tmp_path, fmt):
    path = tmp_path / "render.jpg"
    path.write_bytes(_picture(fmt))
    with pytest.raises(imaging.ImageRejected, match=f"holds a {fmt} image.*save it as PNG or JPEG"):
        imaging.inspect_image(path, 10**8)


def test_the_import_says_so_and_takes_the_others(client, dataset_id):
    job = upload(client, dataset_id, [("render.png", _picture("TGA")), ("photo.png", image_bytes(1))])
    result = job["result"]
    assert result["imported"] == ["photo.png"]
    assert result["skipped"] == [{"name": "render.png", "reason": "the file holds a TGA image, which a page cannot "
                                  "show: save it as PNG or JPEG and upload it again"}]


def test_a_photo_saved_under_another_image_name_still_imports(tmp_path):
    for name, fmt in (("shot.png", "JPEG"), ("scan.jpg", "PNG"), ("old.png", "GIF"), ("old.jpg", "BMP")):
        path = tmp_path / name
        path.write_bytes(_picture(fmt))
        assert imaging.inspect_image(path, 10**8).width == 64


def test_a_long_strip_is_sent_to_the_captioner(tmp_path):
    path = tmp_path / "strip.png"
    Image.new("RGB", (70_000, 8), (200, 40, 40)).save(path)
    assert imaging.inspect_image(path, 10**8).width == 70_000
    with Image.open(io.BytesIO(imaging.encode_for_caption(path, 1_000_000))) as sent:
        assert sent.format == "JPEG" and max(sent.size) <= imaging.JPEG_MAX_SIDE and sent.size[1] >= 1
