"""An import that skips thousands of files (a ZIP of notes beside a few photos, a Parquet table of text) lists the
first MAX_SKIPPED_LISTED with their reasons and counts the rest in one entry; its sentence counts every one."""

from __future__ import annotations

from app import importer
from tests import test_datasets_support as support
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_datasets_support import image_bytes, upload, zip_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def test_a_zip_of_many_notes_lists_the_first_and_counts_them_all(client, dataset_id, monkeypatch):
    monkeypatch.setattr(importer, "MAX_SKIPPED_LISTED", 20)
    entries = [("cat.png", image_bytes(1))] + [(f"notes/{i:03d}.md", b"a note") for i in range(45)]
    job = upload(client, dataset_id, [("mixed.zip", zip_bytes(entries))])
    assert job["status"] == "completed", job
    assert job["message"].startswith("Imported 1 image, skipped 45"), job["message"]
    skipped = job["result"]["skipped"]
    assert len(skipped) == 21 and skipped[0]["reason"] == "not an image (skipped)"
    assert skipped[-1] == {"name": "25 more files", "count": 25, "reason": "skipped too (only the first 20 are listed)"}


def test_a_parquet_tables_counted_rows_are_in_the_sentence(client, dataset_id):
    rows = [{"image": (f"row {i}".encode(), f"{i}.txt"), "text": "x"} for i in range(130)]
    rows.append({"image": (image_bytes(2), "dog.png"), "text": "a dog"})
    job = upload(client, dataset_id, [("table.parquet", parquet_bytes(rows, HF_FEATURES))])
    assert job["status"] == "completed", job
    assert job["message"].startswith("Imported 1 image, skipped 130"), job["message"]  # was "skipped 101"
    assert job["result"]["skipped"][-1]["count"] == 30
