"""A bulk caption change (find & replace, prepend/append, undo) writes its captions with one sync of the disk, not one
fsync per caption (3,000 of them took seconds), and is as safe as before: each caption file is replaced whole, a
failure before any is placed changes none, no temp file is left behind, and undo brings every caption back."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from app import caption_files
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id
BEFORE = {f"i{i}.png": f"a red car number {i}" for i in range(40)}


def _captions(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


@pytest.fixture
def seeded(client, dataset_id) -> None:
    files = [(name, image_bytes(i)) for i, name in enumerate(BEFORE)]
    files += [(name.replace(".png", ".txt"), text.encode()) for name, text in BEFORE.items()]
    assert upload(client, dataset_id, files)["status"] == "completed"


def _dataset_folder(studio_root, dataset_id):
    return studio_root / "datasets" / dataset_id


def _temp_files(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


@pytest.mark.parametrize("change", [{"path": "replace", "find": "red", "replace": "blue", "apply": True},
                                    {"path": "affix", "prepend": "tok"}])
def test_a_bulk_change_syncs_once_and_undo_restores_every_caption(client, dataset_id, seeded, studio_root,
                                                                  monkeypatch, change):
    folder = _dataset_folder(studio_root, dataset_id)
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd))[1])
    versions = {image["name"]: image["version"]
                for image in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    body = {key: value for key, value in change.items() if key != "path"}
    response = client.post(f"/api/datasets/{dataset_id}/captions/{change['path']}", json=body)
    assert response.status_code == 200, response.get_json()
    assert len(syncs) < 5  # the undo record and the folder: not one per caption (40 here)
    after = _captions(client, dataset_id)
    assert all(after[name] != text for name, text in BEFORE.items())
    assert all("blue" in text or text.startswith("tok, ") for text in after.values())
    assert _temp_files(folder) == []
    for name in BEFORE:
        caption = folder / name.replace(".png", ".txt")
        assert stat.S_IMODE(caption.stat().st_mode) == 0o644
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert all(image["version"] != versions[image["name"]] for image in images)  # an open editor sees the change

    syncs.clear()
    undone = client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()
    assert undone["restored"] == len(BEFORE) and undone["kept"] == []
    assert len(syncs) < 5
    assert _captions(client, dataset_id) == BEFORE
    assert _temp_files(folder) == []


def test_a_full_disk_while_the_captions_are_written_out_changes_none(client, dataset_id, seeded, studio_root,
                                                                    monkeypatch):
    folder = _dataset_folder(studio_root, dataset_id)
    real_fdopen, opened = os.fdopen, []

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        opened.append(fd)
        if len(opened) == 10:  # the tenth caption's temp file: the disk is full
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return handle

    monkeypatch.setattr(caption_files.os, "fdopen", fdopen)
    response = client.post(f"/api/datasets/{dataset_id}/captions/replace",
                           json={"find": "red", "replace": "blue", "apply": True})
    monkeypatch.undo()
    assert response.status_code == 507 and "disk" in response.get_json()["error"].lower()
    assert _captions(client, dataset_id) == BEFORE  # none was placed: every caption as it was
    assert _temp_files(folder) == []
    assert client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()["restored"] == 0


def test_without_syncfs_each_staged_caption_is_fsynced(client, dataset_id, seeded, studio_root, monkeypatch):
    """Where the file system cannot be synced at once, each temp file is fsynced before it is put in place."""
    monkeypatch.setattr(caption_files, "_syncfs", lambda folder: False)
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd))[1])
    response = client.post(f"/api/datasets/{dataset_id}/captions/replace",
                           json={"find": "red", "replace": "blue", "apply": True})
    assert response.status_code == 200 and response.get_json()["images"] == len(BEFORE)
    assert len(syncs) >= len(BEFORE)
    assert all("blue" in text for text in _captions(client, dataset_id).values())
    assert _temp_files(_dataset_folder(studio_root, dataset_id)) == []
