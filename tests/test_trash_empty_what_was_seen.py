"""Emptying Recently deleted removes what the page showed, nothing more: a delete made since (another tab, a
one-click removal) stays to be restored. It says how many went, the bytes the disk got back (a file an export also
links to stays on the disk) and what could not be removed, instead of claiming it all went."""

from __future__ import annotations

import os

from app import trash
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _delete(client, dataset_id, names) -> str:
    return client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": names}).get_json()["trash"]


def test_emptying_keeps_a_batch_deleted_after_the_page_listed_the_trash(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat"), ("b.png", image_bytes(2))])
    seen = _delete(client, dataset_id, ["a.png"])
    shown = client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"]
    assert shown[0]["bytes"] == sum(f.stat().st_size for f in (studio_root / "datasets" / dataset_id / ".trash" /
                                                               seen).iterdir() if f.name != "deleted.json")
    later = _delete(client, dataset_id, ["b.png"])  # another tab, while this one asks "Empty Recently deleted?"
    emptied = client.delete(f"/api/datasets/{dataset_id}/trash", json={"batches": [b["id"] for b in shown]})
    assert emptied.get_json() == {"removed": 1, "left": 0, "bytes": shown[0]["bytes"]}
    (kept,) = client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"]
    assert kept["id"] == later and kept["images"] == ["b.png"]
    assert client.post(f"/api/datasets/{dataset_id}/trash/{later}/restore").get_json()["restored"] == ["b.png"]
    bad = client.delete(f"/api/datasets/{dataset_id}/trash", json={"batches": "all"})
    assert bad.status_code == 422


def test_a_file_an_export_also_links_to_frees_no_bytes(client, dataset_id, studio_root, tmp_path):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    os.link(studio_root / "datasets" / dataset_id / "a.png", tmp_path / "exported.png")
    batch = _delete(client, dataset_id, ["a.png"])
    emptied = client.delete(f"/api/datasets/{dataset_id}/trash", json={"batches": [batch]}).get_json()
    assert emptied == {"removed": 1, "left": 0, "bytes": 0} and (tmp_path / "exported.png").is_file()


def test_emptying_says_what_could_not_be_removed(client, dataset_id, monkeypatch):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    batch = _delete(client, dataset_id, ["a.png"])
    monkeypatch.setattr(trash.shutil, "rmtree", lambda *args, **kwargs: None)  # a read-only folder
    assert client.delete(f"/api/datasets/{dataset_id}/trash").get_json() == {"removed": 0, "left": 1, "bytes": 0}
    answer = client.delete(f"/api/datasets/{dataset_id}/trash", json={"batches": [batch]}).get_json()
    assert answer == {"removed": 0, "left": 1, "bytes": 0}
    monkeypatch.undo()
    assert client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore").get_json()["restored"] == ["a.png"]


def test_emptying_deleted_datasets_keeps_one_deleted_after_the_page_listed_them(client):
    first = client.post("/api/datasets", json={"name": "Cats"}).get_json()["id"]
    second = client.post("/api/datasets", json={"name": "Dogs"}).get_json()["id"]
    upload(client, first, [("a.png", image_bytes(1))])
    client.delete(f"/api/datasets/{first}")
    shown = client.get("/api/deleted-datasets").get_json()["datasets"]
    client.delete(f"/api/datasets/{second}")  # another tab
    emptied = client.delete("/api/deleted-datasets", json={"datasets": [d["id"] for d in shown]}).get_json()
    assert emptied["removed"] == 1 and emptied["left"] == 0 and emptied["bytes"] > 0
    (kept,) = client.get("/api/deleted-datasets").get_json()["datasets"]
    assert kept["dataset_id"] == second
    assert client.post(f"/api/deleted-datasets/{kept['id']}/restore").get_json() == {"restored": second}
