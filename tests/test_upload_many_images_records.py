"""An import of many images writes dataset.json less often as writing it takes longer (it is written whole, so each
write grows with the dataset): ten thousand images no longer spend most of their import rewriting it. Every image
placed is still recorded by the end, and a stopped import keeps what it placed (tests/test_import_stop.py)."""

from __future__ import annotations

import time

from app import importer
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, zip_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def test_slow_writes_of_the_records_are_spaced_out_and_every_image_is_recorded(client, dataset_id, monkeypatch):
    real_flush, writes = importer.flush, []

    def slow_flush(dataset, pending, final=False):
        writes.append(len(pending))
        time.sleep(0.5)  # a dataset.json of tens of thousands of images
        real_flush(dataset, pending, final)

    monkeypatch.setattr(importer, "flush", slow_flush)
    count = 4 * importer.FLUSH_EVERY
    archive = zip_bytes([(f"{n:04d}.png", image_bytes(n, size=(16, 16))) for n in range(count)])
    job = upload(client, dataset_id, [("many.zip", archive)])
    assert job["status"] == "completed" and len(job["result"]["imported"]) == count, job
    # written at the first 50, then not again before ten times its half second had passed: once more at the end
    assert len(writes) <= 3, writes
    listed = client.get(f"/api/datasets/{dataset_id}/images?limit=1000").get_json()["images"]
    assert len(listed) == count
