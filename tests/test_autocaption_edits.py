"""An image cropped, rotated or mirrored while its caption is made never gets the caption of the picture it was:
the run captions the new picture again, or, edited once more meanwhile, leaves it uncaptioned and says so."""

from __future__ import annotations

import threading

import pytest

from app.autocaption import EDITED_PICTURE
from tests.test_datasets_autocaption import _captions, _setup, stand_in  # noqa: F401 - the fixture
from tests.test_datasets_support import wait_job


def _edit(client, did: str, name: str, edit: dict) -> dict:
    response = client.post(f"/api/datasets/{did}/images/{name}/edit", json=edit)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _width(client, did: str, name: str) -> int:
    images = client.get(f"/api/datasets/{did}/images").get_json()["images"]
    return next(i["width"] for i in images if i["name"] == name)


def _block_again(stand_in, width: int) -> threading.Event:  # noqa: F811 - the fixture
    """The next request for `width` blocks on fresh events; returns the event that releases the one blocked now."""
    held = stand_in.release
    stand_in.release, stand_in.blocked, stand_in.block_width = threading.Event(), threading.Event(), width
    return held


@pytest.mark.parametrize("edit, width_after", [
    ({"op": "flip", "axis": "horizontal"}, 60),  # the same size: only the second request tells
    ({"op": "rotate", "degrees": 90}, 40),  # the stand-in captions the width it is sent
])
def test_an_image_edited_while_captioned_is_captioned_again(make_settings, stand_in, edit,  # noqa: F811
                                                            width_after):
    stand_in.block_width = 60
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61))
    assert client.post(f"/api/datasets/{did}/caption", json={"mode": "overwrite"}).status_code == 202
    assert stand_in.blocked.wait(10), "the run never reached the blocking image"
    _edit(client, did, "w60.png", edit)  # while the service works on the picture as it was
    assert _width(client, did, "w60.png") == width_after
    stand_in.release.set()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed" and job["errors"] == [], job
    assert job["message"] == "Captioned 2 of 2 images."
    assert _captions(client, did) == {"w60.png": f"{width_after}px detailed image", "w61.png": "61px detailed image"}
    assert len(stand_in.requests) == 3  # w60 twice (before and after its edit), w61 once
    # undo brings back what the run replaced, once per image
    assert client.post(f"/api/datasets/{did}/captions/undo").get_json()["op"] == "auto-caption"
    assert _captions(client, did) == {"w60.png": "", "w61.png": ""}


def test_an_image_edited_again_while_captioned_again_is_left_uncaptioned(make_settings, stand_in):  # noqa: F811
    stand_in.block_width = 60
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61))
    client.put(f"/api/datasets/{did}/captions/w60.png", json={"caption": "a caption before the run"})
    client.post(f"/api/datasets/{did}/caption", json={"mode": "append"})
    assert stand_in.blocked.wait(10), "the run never reached the blocking image"
    _edit(client, did, "w60.png", {"op": "rotate", "degrees": 90})  # now 40 wide
    _block_again(stand_in, 40).set()  # the first caption comes back: the run asks again for the rotated picture
    assert stand_in.blocked.wait(10), "the run did not caption the edited picture again"
    _edit(client, did, "w60.png", {"op": "rotate", "degrees": -90})  # and it is edited once more meanwhile
    stand_in.release.set()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed", job
    assert job["errors"] == [{"item": "w60.png", "message": EDITED_PICTURE}]
    assert job["message"] == ("Captioned 1 of 2 images; w60.png was edited while it was captioned: "
                              "caption it again.")
    assert job["result"]["skipped_changed"] == ["w60.png"] and job["result"]["failed"] == 0
    # neither stale caption was written: the caption is the user's, as it was
    assert _captions(client, did) == {"w60.png": "a caption before the run", "w61.png": "61px detailed image"}
    assert len(stand_in.requests) == 3


def test_a_caption_edited_while_the_picture_changed_stays_the_users(make_settings, stand_in):  # noqa: F811
    stand_in.block_width = 60
    client, did = _setup(make_settings, stand_in.url, widths=(60,))
    client.post(f"/api/datasets/{did}/caption", json={"mode": "overwrite"})
    assert stand_in.blocked.wait(10), "the run never reached the blocking image"
    _edit(client, did, "w60.png", {"op": "flip", "axis": "vertical"})
    client.put(f"/api/datasets/{did}/captions/w60.png", json={"caption": "upside down, says me"})
    stand_in.release.set()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed" and job["result"]["skipped_edited"] == ["w60.png"]
    assert _captions(client, did) == {"w60.png": "upside down, says me"}
    assert len(stand_in.requests) == 1  # the user's caption wins: nothing to caption again
