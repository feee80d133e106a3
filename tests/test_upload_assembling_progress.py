"""A big upload put together from its chunks reports how far it has got, in bytes, while it is put together (minutes
for a big file on a network volume), instead of "Assembling… 0/?" until it is done."""

from __future__ import annotations

import zipfile

from studio import chunked
from studio.job_reporter import JobReporter
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes


def test_putting_the_chunks_together_says_how_many_bytes_are_done(make_settings, monkeypatch):
    import app as datasets_app

    seen = []
    real_update = JobReporter.update

    def update(self, force=False, **values):
        if "bytes_done" in values:
            seen.append((values.get("phase", self.values.get("phase")), values["bytes_done"],
                         self.values.get("bytes_total", values.get("bytes_total"))))
        return real_update(self, force, **values)

    monkeypatch.setattr(JobReporter, "update", update)
    client = datasets_app.create_app(make_settings(UPLOAD_CHUNK_MB=1)).test_client()
    dataset_id = client.post("/api/datasets", json={"name": "Big"}).get_json()["id"]
    data = zip_bytes([("a.png", image_bytes(1)), ("filler.bin", bytes(range(256)) * 10_000)],
                     compression=zipfile.ZIP_STORED)  # 2.5 MB: three chunks of 1 MB
    session = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "big.zip", "size": len(data)}
                          ).get_json()
    assert session["chunks"] == 3
    for n in range(3):
        client.put(f"/api/datasets/{dataset_id}/uploads/{session['id']}/chunks/{n}",
                   data=data[n * 2**20:(n + 1) * 2**20])
    started = client.post(f"/api/datasets/{dataset_id}/imports", json={"sessions": [session["id"]]}).get_json()
    done = wait_job(client, f"/api/datasets/{dataset_id}/imports/{started['id']}")
    assert done["status"] == "completed", done
    assert seen == [("assembling", 0, len(data)), ("assembling", 2**20, len(data)),
                    ("assembling", 2 * 2**20, len(data)), ("assembling", len(data), len(data))]


def test_assemble_tells_its_progress_after_each_chunk(tmp_path):
    info = chunked.create(tmp_path, {"dataset": "d"}, "f.zip", 25, 10)
    folder = chunked.session_dir(tmp_path, info["id"])
    for n, size in enumerate((10, 10, 5)):
        (folder / "chunks" / str(n)).write_bytes(bytes([n]) * size)
    heard = []
    target = chunked.assemble(info, folder, tmp_path / "f.zip", progress=heard.append)
    assert heard == [10, 20, 25] and target.read_bytes() == bytes([0]) * 10 + bytes([1]) * 10 + bytes([2]) * 5
