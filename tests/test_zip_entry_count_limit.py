"""A ZIP that lists more entries than one archive may (a million empty files in a few megabytes) is refused before
its table of contents is read into memory: a sentence, nothing imported, the server alive."""

from __future__ import annotations

import struct
import zipfile

from app import zipimport
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, zip_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def test_an_archive_of_too_many_entries_is_refused_with_a_sentence(client, dataset_id, studio_root, monkeypatch):
    monkeypatch.setattr(zipimport, "MAX_ENTRIES", 50)
    entries = [("a.png", image_bytes(1))] + [(f"empty/{i:03d}.txt", b"") for i in range(50)]
    job = upload(client, dataset_id, [("many.zip", zip_bytes(entries))])
    assert job["status"] == "failed", job
    assert "many.zip lists 51 files, over the limit of 50 for one archive" in job["message"]
    assert "split it into smaller ZIPs" in job["message"]
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["images"] == 0
    # at the limit it imports as before
    job = upload(client, dataset_id, [("fine.zip", zip_bytes(entries[:50]))])
    assert job["status"] == "completed" and client.get(f"/api/datasets/{dataset_id}").get_json()["images"] == 1


def test_an_end_record_claiming_a_million_entries_is_refused_before_reading_them(client, dataset_id):
    data = bytearray(zip_bytes([("a.png", image_bytes(1))]))
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = struct.pack("<HH", 65535, 65535)  # entries on this disk, in all: 0xFFFF means ZIP64
    data = bytes(data[:end]) + _zip64_end(1_000_000, len(data[:end])) + bytes(data[end:])
    job = upload(client, dataset_id, [("claims.zip", data)])
    assert job["status"] == "failed" and "lists 1,000,000 files" in job["message"], job
    assert client.get("/health").status_code == 200


def _zip64_end(entries: int, at: int) -> bytes:
    """A ZIP64 end record claiming `entries`, and the locator pointing at it (placed at offset `at`)."""
    record = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, 0, 0)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)
    return record + locator


def test_a_normal_archive_reads_its_count_as_zipfile_does(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"{i}.txt", "x")
    zipimport._check_entry_count(archive, "ok.zip")  # nothing raised
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    zipimport._check_entry_count(tmp_path / "junk.zip", "junk.zip")  # left to zipfile, which says damaged
