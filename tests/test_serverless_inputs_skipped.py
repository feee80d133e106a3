"""What a serverless job's ZIPs and Parquet files leave out (a caption without its image, an unsafe name, a link, a
row without an image) is in the job's output under `skipped`, as a prefix's own files are, not only in the log."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import io
import zipfile

from serverless.dataset import fetch_dataset
from serverless.handler import _fetch_dataset, handler
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_serverless import GOOD_CONFIG, _zip, file_server, image_bytes, worker_env  # noqa: F401 - fixtures
from tests.test_serverless_review import moto  # noqa: F401 - a fixture


def hostile_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("set/a.png", image_bytes())
        zf.writestr("set/a.txt", "anna")
        zf.writestr("set/ghost.txt", "a caption whose image was left out")
        zf.writestr("../escape.png", image_bytes())
        link = zipfile.ZipInfo("set/link.png")
        link.create_system, link.external_attr = 3, 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def test_a_zip_link_says_what_it_left_out(file_server, make_settings, tmp_path):
    folder, base = file_server
    (folder / "set.zip").write_bytes(hostile_zip())
    settings = make_settings(ALLOW_PRIVATE_URLS=1)
    prepared = _fetch_dataset({"url": f"{base}/set.zip"}, settings, tmp_path / "raw", tmp_path / "ds", "set",
                              "dataset", lambda update: None)
    assert prepared.images == 1 and prepared.captions == 1
    reasons = {item["file"]: item["reason"] for item in prepared.skipped}
    assert set(reasons) == {"set/ghost.txt", "../escape.png", "set/link.png"}, reasons
    assert "caption file with no image" in reasons["set/ghost.txt"] and "unsafe path" in reasons["../escape.png"]


def test_containers_in_a_prefix_name_what_they_left_out(moto, make_settings, tmp_path):
    table = parquet_bytes([{"image": (image_bytes(), "one.png"), "text": "a door"}, {"image": None, "text": "none"}],
                          features=HF_FEATURES)
    moto.make_bucket("left-out", {"anna/more.zip": _zip({"b.png": image_bytes(), "c.txt": "no c.png"}),
                                  "anna/train.parquet": table})
    left = fetch_dataset({"prefix": "anna"}, make_settings(**moto.env(S3_BUCKET="left-out")), tmp_path / "raw")
    assert {item["file"] for item in left} == {"more.zip/c.txt", "train.parquet row 1"}, left


def test_a_zip_with_only_captions_says_why_it_holds_no_images(worker_env, moto, file_server):
    folder, base = file_server
    (folder / "captions.zip").write_bytes(_zip({"a.txt": "anna", "notes.pdf": b"%PDF"}))
    for key, value in moto.env(S3_BUCKET="only-captions", ALLOW_PRIVATE_URLS=1).items():
        worker_env.setenv(key, value)
    moto.make_bucket("only-captions")
    result = handler({"id": "caps", "input": {"job_config": GOOD_CONFIG, "dataset": {"url": f"{base}/captions.zip"}}})
    assert result["error"] == "The dataset holds no usable images."
    assert {item["file"] for item in result["details"]} == {"a.txt", "notes.pdf"}, result
