"""Restoring from Recently deleted never loses what it restores: a restore that cannot record the images (a full
disk) puts them back into their batch, which stays listed to try again; a deleted dataset restored twice at once
(a double click) comes back once, and emptying Recently deleted while it comes back cannot tear it apart."""

from __future__ import annotations

import threading
import time

from app import trash
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload
from tests.test_disk_full import full_disk  # noqa: F401 (a fixture)

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _names(client, dataset_id) -> list[str]:
    return [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]


def test_a_restore_on_a_full_disk_leaves_the_batch_whole_to_try_again(client, dataset_id, studio_root,
                                                                       full_disk):  # noqa: F811
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a red cat"), ("b.png", image_bytes(2))])
    batch = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png"]}).get_json()["trash"]
    full_disk["full"] = True
    refused = client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore")
    full_disk["full"] = False
    assert refused.status_code == 507
    folder = studio_root / "datasets" / dataset_id
    assert not (folder / "a.png").exists() and not (folder / "a.txt").exists()  # not half back, unrecorded
    (listed,) = client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"]
    assert listed["id"] == batch and listed["images"] == ["a.png"]
    again = client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore").get_json()
    assert again == {"restored": ["a.png"], "renamed": {}}
    assert _names(client, dataset_id) == ["a.png", "b.png"] and (folder / "a.txt").read_text() == "a red cat"


def _slow_moves(monkeypatch):
    real = trash.os.replace

    def slow(source, target):
        time.sleep(0.4)
        return real(source, target)

    monkeypatch.setattr(trash.os, "replace", slow)


def test_a_deleted_dataset_restored_twice_at_once_comes_back_once(client, monkeypatch):
    made = client.post("/api/datasets", json={"name": "Cats"}).get_json()
    upload(client, made["id"], [("a.png", image_bytes(1))])
    entry = client.delete(f"/api/datasets/{made['id']}").get_json()["trash"]
    _slow_moves(monkeypatch)
    answers = []
    clicks = [threading.Thread(target=lambda: answers.append(client.post(f"/api/deleted-datasets/{entry}/restore")))
              for _ in range(2)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert sorted(a.status_code for a in answers) == [200, 404]
    assert "restored, emptied" in next(a for a in answers if a.status_code == 404).get_json()["error"]
    assert [d["id"] for d in client.get("/api/datasets").get_json()["datasets"]] == [made["id"]]
    assert _names(client, made["id"]) == ["a.png"]


def test_emptying_deleted_datasets_while_one_comes_back_leaves_it_whole(client, studio_root, monkeypatch):
    made = client.post("/api/datasets", json={"name": "Cats"}).get_json()
    upload(client, made["id"], [(f"{i}.png", image_bytes(i)) for i in range(3)])
    entry = client.delete(f"/api/datasets/{made['id']}").get_json()["trash"]
    _slow_moves(monkeypatch)
    answers = []
    restoring = threading.Thread(target=lambda: answers.append(client.post(f"/api/deleted-datasets/{entry}/restore")))
    restoring.start()
    time.sleep(0.1)  # the restore has begun
    emptied = client.delete("/api/deleted-datasets")
    restoring.join()
    assert answers[0].status_code == 200 and answers[0].get_json() == {"restored": made["id"]}
    assert emptied.get_json() == {"removed": 0, "bytes": 0}
    assert _names(client, made["id"]) == ["0.png", "1.png", "2.png"]
    assert all((studio_root / "datasets" / made["id"] / f"{i}.png").is_file() for i in range(3))
