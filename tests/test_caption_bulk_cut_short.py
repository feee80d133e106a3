"""A bulk caption change cut short (a full disk, a killed worker) can still be undone: its undo is written before the
first caption, so the captions it did change go back and the others, never reached, stay as they were."""

from __future__ import annotations

import errno

import pytest

from app import captions as captions_module
from tests import test_datasets_support as support
from tests.test_datasets_autocaption import _captions as _captions_of
from tests.test_datasets_autocaption import _setup, stand_in  # noqa: F401 - the fixture
from tests.test_datasets_support import image_bytes, upload, wait_job

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


def test_an_auto_caption_run_keeps_its_undo_up_to_date_as_it_goes(make_settings, stand_in):  # noqa: F811
    """A run that replaced a caption someone wrote has its undo on disk at once, not only when the run ends: a worker
    killed mid-run (a restart, a crash) leaves a run whose replaced captions can still come back."""
    stand_in.block_width = 61
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61))
    client.put(f"/api/datasets/{did}/captions/w60.png", json={"caption": "written by hand"})
    client.post(f"/api/datasets/{did}/caption", json={"mode": "overwrite"})
    assert stand_in.blocked.wait(10)  # w60 is captioned; the run waits on w61
    undo = client.get(f"/api/datasets/{did}/captions/undo").get_json()
    assert undo["available"] and undo["op"] == "auto-caption" and undo["images"] == 1
    stand_in.release.set()
    assert wait_job(client, f"/api/datasets/{did}/caption", key="job")["status"] == "completed"
    assert client.post(f"/api/datasets/{did}/captions/undo").get_json()["restored"] == 2
    assert _captions_of(client, did) == {"w60.png": "written by hand", "w61.png": ""}
