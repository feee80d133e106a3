"""An upload the disk (or the connection) cuts short frees what it had written at once, and says so plainly: a
multipart upload's files, a chunk half written, and a ZIP half unpacked (which is the disk's fault, not the
entries': no entry is called damaged)."""

from __future__ import annotations

import errno
import io
import zipfile

from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import ClientDisconnected

from app import zipimport
from studio import chunked
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, zip_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

FULL = OSError(errno.ENOSPC, "No space left on device")


def _filling_open(room: int):
    """`open` for a module whose file writes fill the disk after `room` bytes (what a real full disk does)."""
    real_open = open

    class Filling(io.FileIO):
        def write(self, data):
            nonlocal room
            if len(data) > room:
                super().write(data[:room])
                room = 0
                raise FULL
            room -= len(data)
            return super().write(data)

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode and "b" in mode:
            return Filling(path, "w")
        return real_open(path, mode, *args, **kwargs)

    return fake_open


def _uploads_files(studio_root) -> list[str]:
    uploads = studio_root / ".uploads"
    return sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*") if p.is_file()) if uploads.is_dir() else []


def test_a_multipart_upload_the_disk_cuts_short_leaves_nothing_behind(client, dataset_id, studio_root, monkeypatch):
    real_save = FileStorage.save

    def save(self, dst, buffer_size=16384):
        if self.filename == "second.png":
            with open(dst, "wb") as sink:
                sink.write(b"\x89PNG half of it")
            raise FULL
        return real_save(self, dst, buffer_size)

    monkeypatch.setattr(FileStorage, "save", save)
    data = {"files": [(io.BytesIO(image_bytes(1)), "first.png"), (io.BytesIO(image_bytes(2)), "second.png")]}
    response = client.post(f"/api/datasets/{dataset_id}/upload", data=data, content_type="multipart/form-data")
    assert response.status_code == 507 and response.get_json()["error"].startswith("The disk is full (")
    assert _uploads_files(studio_root) == []  # not six hours later: now, while the disk is full
    assert not list((studio_root / ".uploads").glob("batch-*"))


def _session(client, dataset_id: str, size: int) -> str:
    response = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "big.zip", "size": size})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_a_chunk_the_disk_cuts_short_leaves_no_part_behind(client, dataset_id, studio_root, monkeypatch):
    sid = _session(client, dataset_id, 3000)
    monkeypatch.setattr(chunked, "open", _filling_open(1000), raising=False)
    response = client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=b"x" * 3000)
    assert response.status_code == 507, response.get_json()
    assert _uploads_files(studio_root) == [f"session-{sid}/session.json"]
    monkeypatch.undo()  # space was freed: the chunk is sent again
    assert client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=b"x" * 3000).status_code == 200
    assert client.get(f"/api/datasets/{dataset_id}/uploads/{sid}").get_json()["complete"]


def test_a_chunk_whose_connection_drops_leaves_no_part_behind(studio_root, make_settings):
    info = chunked.create(studio_root / ".uploads", {"dataset": "d"}, "big.zip", 3000, 3000)
    folder = chunked.session_dir(studio_root / ".uploads", info["id"])

    class Dropped:
        calls = 0

        def read(self, size):
            self.calls += 1
            if self.calls > 1:
                raise ClientDisconnected()
            return b"x" * 1000

    try:
        chunked.receive_chunk(info, folder, "0", Dropped(), None)
    except ClientDisconnected:
        pass
    assert sorted(p.name for p in (folder / "chunks").iterdir()) == []


def test_a_zip_the_disk_fills_while_it_unpacks_fails_with_the_disk_full_sentence(client, dataset_id, studio_root,
                                                                                 monkeypatch):
    archive = zip_bytes([(f"{n}.png", image_bytes(n, size=(256, 256))) for n in range(6)],
                        compression=zipfile.ZIP_STORED)
    monkeypatch.setattr(zipimport, "open", _filling_open(len(image_bytes(0, size=(256, 256))) * 3 + 10),
                        raising=False)
    job = upload(client, dataset_id, [("photos.zip", archive)])
    assert job["status"] == "failed" and job["error"].startswith("The disk is full ("), job
    assert "damaged" not in job["error"]
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert images == []  # nothing of a ZIP half unpacked is listed
    assert _uploads_files(studio_root) == []  # what it had unpacked went with the upload
