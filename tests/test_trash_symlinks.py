"""A symlink in a dataset's folder goes to Recently deleted and back as itself: deleting a link to another image of
the dataset never moves (and emptying never removes) that image, and a caption linked to a file outside the dataset
leaves that file where it is."""

from __future__ import annotations

import os

from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _names(client, dataset_id) -> list[str]:
    return [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]


def test_deleting_a_link_to_another_image_moves_the_link_not_the_image(client, dataset_id, studio_root):
    upload(client, dataset_id, [("real.png", image_bytes(1)), ("real.txt", b"a red cat")])
    folder = studio_root / "datasets" / dataset_id
    real = (folder / "real.png").read_bytes()
    os.symlink("real.png", folder / "link.png")
    deleted = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["link.png"]}).get_json()
    assert deleted["deleted"] == ["link.png"]
    assert (folder / "real.png").read_bytes() == real and not os.path.lexists(folder / "link.png")
    assert _names(client, dataset_id) == ["real.png"]
    (listed,) = client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"]  # shown, to get back
    assert listed["images"] == ["link.png"]

    restored = client.post(f"/api/datasets/{dataset_id}/trash/{deleted['trash']}/restore").get_json()
    assert restored["restored"] == ["link.png"]
    assert os.readlink(folder / "link.png") == "real.png" and (folder / "real.png").read_bytes() == real
    assert (folder / "real.txt").read_text() == "a red cat"

    client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["link.png"]})
    assert client.delete(f"/api/datasets/{dataset_id}/trash").get_json()["removed"] == 1
    assert (folder / "real.png").read_bytes() == real and _names(client, dataset_id) == ["real.png"]


def test_a_caption_linked_outside_the_dataset_leaves_its_file_where_it_is(client, dataset_id, studio_root, tmp_path):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("b.png", image_bytes(2))])
    folder = studio_root / "datasets" / dataset_id
    notes = tmp_path / "notes.txt"
    notes.write_text("my own notes")
    os.symlink(notes, folder / "a.txt")
    deleted = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png", "b.png"]})
    assert deleted.status_code == 200 and deleted.get_json()["deleted"] == ["a.png", "b.png"]
    assert notes.read_text() == "my own notes" and _names(client, dataset_id) == []
    assert not os.path.lexists(folder / "a.png") and not os.path.lexists(folder / "b.png")
    restored = client.post(f"/api/datasets/{dataset_id}/trash/{deleted.get_json()['trash']}/restore").get_json()
    assert restored["restored"] == ["a.png", "b.png"] and (folder / "a.png").is_file() and (folder / "b.png").is_file()
    assert os.readlink(folder / "a.txt") == str(notes) and notes.read_text() == "my own notes"
