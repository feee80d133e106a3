"""A bulk caption change cut short (a full disk, a killed worker) can still be undone: its undo is written before the
first caption, so the captions it did change go back and the others, never reached, stay as they were."""

from __future__ import annotations

import errno

import pytest

from app import captions as captions_module
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id
BEFORE = {f"i{i}.png": f"a red car number {i}" for i in range(6)}


def _captions(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def _disk_full_after(monkeypatch, writes: int) -> None:
    real, done = captions_module.set_caption, []

    def set_caption(dataset, name, text):
        if len(done) == writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        done.append(name)
        return real(dataset, name, text)

    monkeypatch.setattr(captions_module, "set_caption", set_caption)


@pytest.mark.parametrize("change", [{"path": "replace", "find": "red", "replace": "blue", "apply": True},
                                    {"path": "affix", "prepend": "tok"}])
def test_a_bulk_change_cut_short_is_undone_whole(client, dataset_id, monkeypatch, change):
    files = [(name, image_bytes(i)) for i, name in enumerate(BEFORE)]
    files += [(name.replace(".png", ".txt"), text.encode()) for name, text in BEFORE.items()]
    assert upload(client, dataset_id, files)["status"] == "completed"
    _disk_full_after(monkeypatch, 3)
    body = {key: value for key, value in change.items() if key != "path"}
    response = client.post(f"/api/datasets/{dataset_id}/captions/{change['path']}", json=body)
    assert response.status_code == 507 and "disk" in response.get_json()["error"].lower()
    monkeypatch.undo()
    changed = {name for name, text in _captions(client, dataset_id).items() if text != BEFORE[name]}
    assert len(changed) == 3  # cut short half way
    undo = client.get(f"/api/datasets/{dataset_id}/captions/undo").get_json()
    assert undo["available"] and undo["images"] == 6
    undone = client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()
    assert undone["restored"] == 3 and undone["kept"] == []
    assert _captions(client, dataset_id) == BEFORE
