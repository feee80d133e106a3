"""The dataset's ZIP is named as the dataset is, in any script (with a plain ASCII name beside it for old clients, and
a header gunicorn can send); and a full disk while an export's name is pointed at its new version leaves nothing
behind: the name still points at the last version, whole."""

from __future__ import annotations

import errno
import io
import os
import shutil
import zipfile
from urllib.parse import quote

from studio import exports
from studio.workspace import Workspace
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, wait_job

ds_app, client = support.ds_app, support.client


def test_the_zip_is_named_as_the_dataset_in_any_script(client):
    dataset_id = client.post("/api/datasets", json={"name": "日本の猫 café"}).get_json()["id"]
    upload(client, dataset_id, [("猫 1.png", image_bytes(1)), ("猫 1.txt", "ねこ".encode())])
    response = client.get(f"/api/datasets/{dataset_id}/download")
    header = response.headers["Content-Disposition"]
    header.encode("latin-1")  # what a WSGI server can send
    assert header == f"attachment; filename=\"cafe.zip\"; filename*=UTF-8''{quote('日本の猫 café.zip', safe='')}"
    names = zipfile.ZipFile(io.BytesIO(response.data)).namelist()
    assert names == ["猫 1.png", "猫 1.txt", "dataset.json"]


def test_a_download_name_never_breaks_the_header():
    from studio.zip_stream import attachment

    assert attachment("cats.zip") == 'attachment; filename="cats.zip"'
    assert attachment('a/b"c\r\nd.zip') == 'attachment; filename="a_b_c_d.zip"'
    assert attachment("猫.zip") == "attachment; filename=\"download.zip\"; filename*=UTF-8''%E7%8C%AB.zip"
    assert attachment("Test Set.zip", "test-set.zip") == (
        "attachment; filename=\"test-set.zip\"; filename*=UTF-8''Test%20Set.zip")


def test_a_full_disk_while_naming_the_export_leaves_nothing_and_keeps_the_last_version(client, studio_root,
                                                                                       monkeypatch):
    dataset_id = client.post("/api/datasets", json={"name": "Cats", "trigger_word": "tok"}).get_json()["id"]
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat")])
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"}).status_code == 202
    first = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")["result"]["version"]
    full = OSError(errno.ENOSPC, "No space left on device")
    symlink, link, copy = os.symlink, os.link, shutil.copy2

    def refused(real):
        def call(source, target, *args, **kwargs):  # the disk is full for the export name's new entry only
            if os.path.basename(os.path.dirname(target)).startswith(".link-") or \
                    os.path.basename(target).startswith(".link-"):
                raise full
            return real(source, target, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "symlink", refused(symlink))
    monkeypatch.setattr(os, "link", refused(link))
    monkeypatch.setattr(shutil, "copy2", refused(copy))
    client.put(f"/api/datasets/{dataset_id}/captions/a.png", json={"caption": "a black cat"})
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"}).status_code == 202
    failed = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert failed["status"] == "failed" and failed["error"].startswith("The disk is full ("), failed
    workspace = Workspace(studio_root)
    assert [p.name for p in workspace.exports.iterdir() if p.name.startswith(".link-")] == []
    assert exports.resolve(workspace, "cats") == first  # a symlink still: not silently a folder of copies
    assert (workspace.exports / "cats").is_symlink()
    assert (workspace.exports / "cats" / "a.txt").read_text().strip() == "tok, a cat"
