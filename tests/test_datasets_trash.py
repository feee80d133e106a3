"""Recently deleted: a delete moves images and captions into the dataset's trash, one batch per delete;
a batch comes back whole (renamed where a name was taken since), expires after a week, and the trash
can be emptied. Nothing a delete took is gone until then."""

from __future__ import annotations

import io
import time
import zipfile

from app import trash
from app.store import Dataset
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _names(client, dataset_id) -> list[str]:
    return [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]]


def test_a_delete_can_be_undone_with_captions_and_records(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a red cat"), ("b.png", image_bytes(2)),
                                ("c.png", image_bytes(3, size=(40, 40)))])
    before = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    deleted = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png", "b.png"]}).get_json()
    assert deleted["deleted"] == ["a.png", "b.png"] and deleted["trash"]
    folder = studio_root / "datasets" / dataset_id
    assert not (folder / "a.png").exists() and not (folder / "a.txt").exists()
    assert _names(client, dataset_id) == ["c.png"]
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["images"] == 1

    listed = client.get(f"/api/datasets/{dataset_id}/trash").get_json()
    (batch,) = listed["batches"]
    assert batch["id"] == deleted["trash"] and batch["images"] == ["a.png", "b.png"] and batch["bytes"] > 0
    assert listed["keep_days"] == 7 and batch["expires_at"] - batch["deleted_at"] == 7 * 86400
    thumbs = f"/api/datasets/{dataset_id}/trash/{batch['id']}/thumbs/"
    shown = client.get(thumbs + "a.png")  # the list shows what a batch holds
    assert shown.status_code == 200 and shown.mimetype == "image/webp"
    for name in ("c.png", "..%2Fa.png", "deleted.json", ".thumbs"):
        assert client.get(thumbs + name).status_code in (400, 404), name

    restored = client.post(f"/api/datasets/{dataset_id}/trash/{batch['id']}/restore").get_json()
    assert restored == {"restored": ["a.png", "b.png"], "renamed": {}}
    assert client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"] == before  # records, flags, captions
    assert (folder / "a.txt").read_text() == "a red cat"
    assert client.get(f"/api/datasets/{dataset_id}/thumbs/a.png").status_code == 200
    assert client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"] == []
    assert client.get(thumbs + "a.png").status_code == 404  # the batch went back whole
    again = client.post(f"/api/datasets/{dataset_id}/trash/{batch['id']}/restore")
    assert again.status_code == 404 and "restored, emptied" in again.get_json()["error"]


def test_one_click_removals_go_to_the_trash_too(client, dataset_id):
    upload(client, dataset_id, [("big.png", image_bytes(1, size=(520, 520))),
                                ("tiny.png", image_bytes(2, size=(40, 40)))])
    removed = client.post(f"/api/datasets/{dataset_id}/images/remove-flagged", json={"kind": "small"}).get_json()
    assert removed["deleted"] == ["tiny.png"]
    client.post(f"/api/datasets/{dataset_id}/trash/{removed['trash']}/restore")
    assert _names(client, dataset_id) == ["big.png", "tiny.png"]
    one = client.delete(f"/api/datasets/{dataset_id}/images/big.png").get_json()
    assert one["deleted"] == ["big.png"] and one["trash"]


def test_a_name_taken_since_the_delete_comes_back_renamed(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"the old one")])
    batch = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png"]}).get_json()["trash"]
    upload(client, dataset_id, [("a.png", image_bytes(5)), ("a.txt", b"the new one")])
    restored = client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore").get_json()
    assert restored == {"restored": ["a_2.png"], "renamed": {"a.png": "a_2.png"}}
    folder = studio_root / "datasets" / dataset_id
    assert (folder / "a.txt").read_text() == "the new one" and (folder / "a_2.txt").read_text() == "the old one"
    assert (folder / "a_2.png").read_bytes() == image_bytes(1) and _names(client, dataset_id) == ["a.png", "a_2.png"]


def test_deleted_images_stay_out_of_exports_downloads_and_imports(client, dataset_id):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("b.png", image_bytes(2))])
    client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["b.png"]})
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/datasets/{dataset_id}/download").data))
    assert sorted(archive.namelist()) == ["a.png", "dataset.json"]
    # an import after the delete does not take the deleted file back as an unrecorded stray
    upload(client, dataset_id, [("c.png", image_bytes(3))])
    assert _names(client, dataset_id) == ["a.png", "c.png"]


def test_batches_expire_after_a_week_and_the_trash_can_be_emptied(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("b.png", image_bytes(2)), ("c.png", image_bytes(3))])
    for name in ("a.png", "b.png"):
        client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": [name]})
    dataset = Dataset(dataset_id, studio_root / "datasets" / dataset_id)
    assert len(trash.batches(dataset)) == 2
    (dataset.folder / trash.TRASH_DIR / "123-crashed").mkdir()  # a delete that died before its manifest
    trash.purge_expired(dataset, now=time.time() + 6 * 86400)
    assert len(trash.batches(dataset)) == 2 and not (dataset.folder / trash.TRASH_DIR / "123-crashed").exists()
    trash.purge_expired(dataset, now=time.time() + 8 * 86400)
    assert trash.batches(dataset) == []
    client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["c.png"]})
    emptied = client.delete(f"/api/datasets/{dataset_id}/trash").get_json()
    assert emptied == {"removed": 1, "bytes": emptied["bytes"]} and emptied["bytes"] > 0  # what the disk got back
    assert not (dataset.folder / trash.TRASH_DIR).exists()
    assert client.get(f"/api/datasets/{dataset_id}/trash").get_json()["batches"] == []


def test_batch_ids_from_a_request_stay_inside_the_trash(client, dataset_id):
    for batch in ("..%2F..%2Fsecret", "..", ".", ".lock", "..%5C..%5Csecret", "nope"):
        response = client.post(f"/api/datasets/{dataset_id}/trash/{batch}/restore")
        assert response.status_code in (400, 404), batch


# -- whole datasets --------------------------------------------------------------------------------
def test_a_deleted_dataset_comes_back_whole(client, studio_root):
    made = client.post("/api/datasets", json={"name": "Cats", "trigger_word": "zkcat"}).get_json()
    upload(client, made["id"], [("a.png", image_bytes(1)), ("a.txt", b"a red cat"), ("b.png", image_bytes(2))])
    before = client.get(f"/api/datasets/{made['id']}/images").get_json()["images"]
    deleted = client.delete(f"/api/datasets/{made['id']}").get_json()
    assert deleted["deleted"] == made["id"] and deleted["trash"]
    assert client.get("/api/datasets").get_json()["datasets"] == []
    listed = client.get("/api/deleted-datasets").get_json()
    (entry,) = listed["datasets"]
    assert entry["id"] == deleted["trash"] and entry["name"] == "Cats" and entry["images"] == 2 and entry["bytes"] > 0
    assert entry["dataset_id"] == made["id"] and listed["keep_days"] == 7

    restored = client.post(f"/api/deleted-datasets/{entry['id']}/restore").get_json()
    assert restored == {"restored": made["id"]}
    assert client.get(f"/api/datasets/{made['id']}/images").get_json()["images"] == before
    assert client.get(f"/api/datasets/{made['id']}").get_json()["trigger_word"] == "zkcat"
    assert (studio_root / "datasets" / made["id"] / "a.txt").read_text() == "a red cat"
    assert client.get("/api/deleted-datasets").get_json()["datasets"] == []
    assert client.post(f"/api/deleted-datasets/{entry['id']}/restore").status_code == 404


def test_a_deleted_dataset_keeps_its_id_and_its_exports_for_its_restore(client):
    """A new dataset of the deleted one's name took its id, so the deleted one came back under another id, and its
    export versions (which name the id they were made from) showed as the new dataset's, not its own."""
    first = client.post("/api/datasets", json={"name": "Cats"}).get_json()
    upload(client, first["id"], [("old.png", image_bytes(1))])
    assert client.post(f"/api/datasets/{first['id']}/export", json={"name": "cats-v1"}).status_code == 202
    assert support.wait_job(client, f"/api/datasets/{first['id']}/export", key="job")["status"] == "completed"
    entry = client.delete(f"/api/datasets/{first['id']}").get_json()["trash"]
    second = client.post("/api/datasets", json={"name": "Cats"}).get_json()
    assert second["id"] != first["id"] and second["name"] == "Cats"  # the name was free again; the id is held
    assert client.get(f"/api/exports?dataset={second['id']}").get_json()["versions"] == []
    restored = client.post(f"/api/deleted-datasets/{entry}/restore").get_json()["restored"]
    assert restored == first["id"]
    back = client.get(f"/api/datasets/{restored}").get_json()
    assert back["id"] == restored and back["name"] == "Cats 2"  # its name is the new dataset's now
    assert [i["name"] for i in client.get(f"/api/datasets/{restored}/images").get_json()["images"]] == ["old.png"]
    assert [v["name"] for v in client.get(f"/api/exports?dataset={restored}").get_json()["versions"]] == ["cats-v1"]
    assert client.get(f"/api/datasets/{second['id']}").get_json()["images"] == 0


def test_a_dataset_whose_folder_was_taken_since_comes_back_under_a_new_id(client, studio_root):
    first = client.post("/api/datasets", json={"name": "Cats"}).get_json()
    upload(client, first["id"], [("old.png", image_bytes(1))])
    entry = client.delete(f"/api/datasets/{first['id']}").get_json()["trash"]
    (studio_root / "datasets" / first["id"]).mkdir()  # a folder of that name put there by hand
    restored = client.post(f"/api/deleted-datasets/{entry}/restore").get_json()["restored"]
    assert restored != first["id"] and restored.startswith(first["id"] + "-")
    assert [i["name"] for i in client.get(f"/api/datasets/{restored}/images").get_json()["images"]] == ["old.png"]


def test_two_datasets_of_one_name_deleted_within_a_second_each_keep_their_entry(client):
    entries = []
    for image in (1, 2):  # a script's quick create and delete, twice
        made = client.post("/api/datasets", json={"name": "dd"}).get_json()
        upload(client, made["id"], [(f"{image}.png", image_bytes(image))])
        deleted = client.delete(f"/api/datasets/{made['id']}")
        assert deleted.status_code == 200
        entries.append(deleted.get_json()["trash"])
    assert len(set(entries)) == 2
    listed = client.get("/api/deleted-datasets").get_json()["datasets"]
    assert sorted(d["id"] for d in listed) == sorted(entries) and len({d["dataset_id"] for d in listed}) == 2


def test_deleted_datasets_expire_after_a_week_and_can_be_removed_for_good(client, studio_root):
    from app.store import DatasetStore
    from studio.workspace import Workspace

    for name in ("One", "Two"):
        made = client.post("/api/datasets", json={"name": name}).get_json()
        client.delete(f"/api/datasets/{made['id']}")
    store = DatasetStore(Workspace(studio_root))
    trash.purge_expired_datasets(store, now=time.time() + 6 * 86400)
    assert len(trash.deleted_datasets(store)) == 2
    trash.purge_expired_datasets(store, now=time.time() + 8 * 86400)
    assert trash.deleted_datasets(store) == []
    made = client.post("/api/datasets", json={"name": "Three"}).get_json()
    client.delete(f"/api/datasets/{made['id']}")
    emptied = client.delete("/api/deleted-datasets").get_json()
    assert emptied == {"removed": 1, "bytes": emptied["bytes"]} and emptied["bytes"] > 0
    assert not (studio_root / "datasets" / trash.TRASH_DIR).exists()
    stray = studio_root / "datasets" / trash.TRASH_DIR / "stray"  # not "<time>-<id>": never listed or restored
    stray.mkdir(parents=True)
    (stray / "dataset.json").write_text("{}")
    assert client.get("/api/deleted-datasets").get_json()["datasets"] == []
    for entry in ("..", ".", "..%2F..%2Fstudio.db", "123", "nope", "stray"):
        assert client.post(f"/api/deleted-datasets/{entry}/restore").status_code in (400, 404), entry
