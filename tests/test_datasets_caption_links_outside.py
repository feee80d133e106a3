"""A caption file put in by hand as a link to a file outside the dataset (ln -s ~/notes.txt a.txt) is never read
or written through: the gallery still lists every image, bulk caption edits go on with the others, and that file
stays as it was."""

from __future__ import annotations

import os

import pytest

from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


@pytest.fixture
def linked(client, dataset_id, studio_root, tmp_path):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("b.png", image_bytes(2)), ("b.txt", b"a dog")])
    notes = tmp_path / "notes.txt"
    notes.write_text("my private notes")
    os.symlink(notes, studio_root / "datasets" / dataset_id / "a.txt")
    return notes


def test_the_gallery_lists_every_image(client, dataset_id, linked):
    answer = client.get(f"/api/datasets/{dataset_id}/images")
    assert answer.status_code == 200, answer.get_json()
    captions = {image["name"]: (image["has_caption"], image["caption"]) for image in answer.get_json()["images"]}
    assert captions == {"a.png": (False, ""), "b.png": (True, "a dog")}  # the notes are never shown as a caption


def test_saving_that_caption_says_why_and_writes_nothing_outside(client, dataset_id, linked):
    answer = client.put(f"/api/datasets/{dataset_id}/captions/a.png", json={"caption": "a cat"})
    assert answer.status_code == 400 and "outside" in answer.get_json()["error"]
    assert linked.read_text() == "my private notes"


def test_a_bulk_edit_goes_on_with_the_other_captions(client, dataset_id, linked):
    answer = client.post(f"/api/datasets/{dataset_id}/captions/replace", json={"find": "dog", "replace": "wolf",
                                                                                      "apply": True})
    assert answer.status_code == 200, answer.get_json()
    assert client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"][1]["caption"] == "a wolf"
    assert linked.read_text() == "my private notes"
