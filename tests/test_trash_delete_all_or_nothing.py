"""A delete that fails part way (a full disk, a file that will not move) leaves every image where it was and still
in the gallery: none is recorded as gone while it sits in the dataset's folder, unlisted and out of the trash. A
folder that cannot be written is said in a sentence, for a delete and for a restore."""

from __future__ import annotations

import errno
from pathlib import Path

from app import trash
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload
from tests.test_disk_full import FULL

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _names(client, dataset_id) -> list[str]:
    return [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]


def _files(studio_root, dataset_id) -> list[str]:
    return sorted(p.name for p in (studio_root / "datasets" / dataset_id).iterdir() if not p.name.startswith("."))


def test_a_full_disk_while_an_edited_image_is_deleted_leaves_them_all_in_place(client, dataset_id, studio_root,
                                                                               monkeypatch):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat"), ("b.png", image_bytes(2))])
    edited = client.post(f"/api/datasets/{dataset_id}/images/a.png/edit", json={"op": "rotate", "degrees": 90})
    assert edited.status_code == 200
    before = _files(studio_root, dataset_id)
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == ".originals" and ".trash" in self.parts:  # the batch's folder for the edited originals
            raise FULL
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    refused = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png", "b.png"]})
    monkeypatch.undo()
    assert refused.status_code == 507
    assert _names(client, dataset_id) == ["a.png", "b.png"] and _files(studio_root, dataset_id) == before
    assert client.get(f"/api/datasets/{dataset_id}/images/a.png/original").status_code == 200
    deleted = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png", "b.png"]})
    assert deleted.get_json()["deleted"] == ["a.png", "b.png"] and _names(client, dataset_id) == []


def test_a_move_that_fails_part_way_puts_back_the_ones_made(client, dataset_id, studio_root, monkeypatch):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat"), ("b.png", image_bytes(2)),
                                ("c.png", image_bytes(3))])
    before = _files(studio_root, dataset_id)
    real, moves = trash.os.replace, []

    def replace(source, target):
        moves.append(source)
        if len(moves) == 3:
            raise PermissionError(13, "Permission denied", str(source))
        return real(source, target)

    monkeypatch.setattr(trash.os, "replace", replace)
    failed = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png", "b.png", "c.png"]})
    monkeypatch.undo()
    assert failed.status_code == 409 and failed.get_json()["error"].startswith("Nothing was deleted: ")
    assert "cannot be written (a read-only folder" in failed.get_json()["error"]
    assert _names(client, dataset_id) == ["a.png", "b.png", "c.png"] and _files(studio_root, dataset_id) == before
    assert (studio_root / "datasets" / dataset_id / "a.txt").read_text() == "a cat"
    assert client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"] == []
    assert not any((studio_root / "datasets" / dataset_id / ".trash").iterdir())  # no batch left behind


def test_a_restore_into_a_read_only_folder_says_so_and_keeps_the_batch(client, dataset_id, studio_root, monkeypatch):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat")])
    batch = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png"]}).get_json()["trash"]
    real = trash.os.replace

    def replace(source, target):
        if Path(target).parent == studio_root / "datasets" / dataset_id:
            raise OSError(errno.EROFS, "Read-only file system", str(target))
        return real(source, target)

    monkeypatch.setattr(trash.os, "replace", replace)
    refused = client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore")
    monkeypatch.undo()
    assert refused.status_code == 409 and refused.get_json()["error"].startswith("Nothing was restored: ")
    (listed,) = client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"]
    assert listed["id"] == batch and listed["images"] == ["a.png"]
    assert client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore").get_json()["restored"] == ["a.png"]
    assert (studio_root / "datasets" / dataset_id / "a.txt").read_text() == "a cat"
