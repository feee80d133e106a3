"""Parquet files (a Hugging Face dataset's tables): each row's image becomes a dataset image with the row's caption;
every odd or hostile file says what it could not read and adds nothing it should not."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

import app as datasets_app
from app import parquet_import
from tests import test_datasets_support as support
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_datasets_support import image_bytes, upload, zip_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _images(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, "GIF")
    return buffer.getvalue()


def test_each_row_becomes_an_image_with_its_caption(client, dataset_id, studio_root):
    table = parquet_bytes([
        {"image": (image_bytes(1), "cat.png"), "text": "tok, a cat on a sofa"},
        {"image": (image_bytes(2, fmt="JPEG"), None), "text": "tok, a dog"},  # no name: the file's and the row's
        {"image": (image_bytes(3), "cat.png"), "text": "  "},  # the same name again; an empty caption is none
        {"image": (image_bytes(4, fmt="WEBP"), "dir/x.jpg"), "text": "tok, a bird"},  # the bytes say WebP
    ], features=HF_FEATURES)
    job = upload(client, dataset_id, [("train-00000-of-00001.parquet", table)])
    assert job["status"] == "completed", job
    assert _images(client, dataset_id) == {
        "cat.png": "tok, a cat on a sofa",
        "train-00000-of-00001-000001.jpg": "tok, a dog",
        "cat-000002.png": "",
        "x.webp": "tok, a bird",
    }
    assert job["result"]["captions"] == 3 and job["result"]["skipped"] == []
    assert job["message"] == "Imported 4 images; captions from the table's column 'text'."
    assert job["result"]["tables"] == [{"file": "train-00000-of-00001.parquet", "rows": 4, "image_column": "image",
                                        "caption_column": "text"}]
    assert not list((studio_root / ".uploads").iterdir())  # the staged rows are gone


def test_columns_are_found_without_the_hub_s_metadata():
    import pyarrow as pa

    def columns(**types) -> tuple:
        return parquet_import.choose_columns(pa.schema(list(types.items())))

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert columns(conditioning_image=image, image=image, text=pa.string()) == ("image", "text")
    assert columns(picture=image, blip_caption=pa.string(), id=pa.int64()) == ("picture", "blip_caption")
    assert columns(img=pa.binary(), captions=pa.list_(pa.string())) == ("img", "captions")
    assert columns(photo=pa.large_binary(), prompt=pa.string(), text=pa.string()) == ("photo", "text")
    assert columns(data=pa.binary(), label=pa.int64()) == (None, None)  # a binary column not named like an image
    assert columns(frames=pa.list_(image), text=pa.string()) == ("frames", "text")  # a list of images
    assert columns(frames=pa.list_(image), cover=image) == ("cover", None)  # one image per row comes first


def test_a_list_of_images_gives_each_image_the_row_s_caption(client, dataset_id):
    features = {"images": {"_type": "Sequence", "feature": {"_type": "Image"}}, "id": {"_type": "Value"},
                "text": {"dtype": "string", "_type": "Value"}}
    table = parquet_bytes([
        {"id": 1, "images": [(image_bytes(21), "front.png"), (image_bytes(22), None)], "text": "tok, a vase"},
        {"id": 2, "images": [], "text": "tok, nothing"},  # an empty list: skipped, said so
        {"id": 3, "images": [(image_bytes(23, fmt="JPEG"), None)], "text": "tok, a cup"},
    ], features=features)
    job = upload(client, dataset_id, [("shots.parquet", table)])
    assert job["status"] == "completed", job
    assert _images(client, dataset_id) == {"front.png": "tok, a vase", "shots-000000-2.png": "tok, a vase",
                                           "shots-000002.jpg": "tok, a cup"}
    assert job["result"]["skipped"] == [{"name": "shots.parquet row 1", "reason": "no image in this row"}]
    assert job["result"]["tables"][0]["rows"] == 3 and job["result"]["tables"][0]["image_column"] == "images"


def test_a_list_of_captions_takes_the_first_and_a_plain_binary_column_works(client, dataset_id):
    table = parquet_bytes([{"img": image_bytes(5), "captions": ["", "tok, first", "tok, second"]},
                           {"img": image_bytes(6), "captions": None}])
    assert upload(client, dataset_id, [("rows.parquet", table)])["status"] == "completed"
    assert _images(client, dataset_id) == {"rows-000000.png": "tok, first", "rows-000001.png": ""}
    bare = parquet_bytes([{"picture": (image_bytes(7), "p.png"), "id": 3}])
    job = upload(client, dataset_id, [("bare.parquet", bare)])
    assert job["message"] == "Imported 1 image; the table has no caption column: auto-caption the images.", job


def test_rows_without_a_usable_image_are_listed_as_skipped(client, dataset_id):
    table = parquet_bytes([
        {"image": (image_bytes(7), "good.png"), "text": "tok"},
        {"image": None, "text": "no image at all"},
        {"image": (None, "/data/elsewhere.jpg"), "text": "only a path"},
        {"image": (b"not an image", "fake.png"), "text": "junk"},
        {"image": (_gif(), "anim.gif"), "text": "a GIF"},
        {"image": (image_bytes(8)[:200], "cut.png"), "text": "truncated"},  # the importer decodes every one
    ], features=HF_FEATURES)
    job = upload(client, dataset_id, [("mixed.parquet", table)])
    assert job["status"] == "completed", job
    assert _images(client, dataset_id) == {"good.png": "tok"}
    reasons = {item["name"]: item["reason"] for item in job["result"]["skipped"]}
    assert reasons["mixed.parquet row 1"] == "no image in this row"
    assert reasons["mixed.parquet row 2 (/data/elsewhere.jpg)"] == "the image is not inside the file, only its path"
    assert reasons["mixed.parquet row 3 (fake.png)"] == "not an image"
    assert reasons["mixed.parquet row 4 (anim.gif)"].startswith("a GIF image (the studio takes")
    assert reasons["mixed.parquet row 5 (cut.png)"].startswith("the file is cut short")


@pytest.mark.parametrize("content, words", [
    (b"PAR1" + os.urandom(300) + b"PAR1", "damaged.parquet is damaged or not a Parquet file"),
    (b"", "damaged.parquet is damaged or not a Parquet file"),
    (parquet_bytes([{"id": 1, "text": "a"}]), "damaged.parquet has no image column (columns: id, text)"),
])
def test_a_file_that_cannot_be_read_says_why_and_adds_nothing(client, dataset_id, content, words):
    job = upload(client, dataset_id, [("damaged.parquet", content)])
    assert job["status"] == "failed" and words in job["message"], job
    assert _images(client, dataset_id) == {}


def _noise_png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (420, 420, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()  # noise does not compress: ~530 KB


def test_a_file_damaged_after_its_footer_was_read_says_so(client, dataset_id):
    table = bytearray(parquet_bytes([{"image": (image_bytes(n, size=(96, 96)), f"{n}.png"), "text": "t"}
                                     for n in range(6)], features=HF_FEATURES))
    start = len(table) // 3  # inside the first row group's data pages; the footer is intact
    table[start:start + 64] = b"\xff" * 64
    job = upload(client, dataset_id, [("cut.parquet", bytes(table))])
    assert job["status"] == "failed" and "cut.parquet is damaged (row 0 could not be read)" in job["message"], job
    assert _images(client, dataset_id) == {}


def test_a_table_over_the_unpack_limit_is_refused_before_a_row_is_read(make_settings, monkeypatch):
    client = datasets_app.create_app(make_settings(ZIP_MAX_TOTAL_MB=1)).test_client()
    dataset_id = client.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    table = parquet_bytes([{"image": (_noise_png(n), f"{n}.png"), "text": "t"} for n in range(4)],
                          features=HF_FEATURES, compression="none")
    reads = []
    monkeypatch.setattr(parquet_import, "_image_bytes", lambda value: reads.append(value) or (None, ""))
    job = upload(client, dataset_id, [("big.parquet", table)])
    assert job["status"] == "failed" and "would unpack to 2 MB, over the limit of 1 MB (ZIP_MAX_TOTAL_MB)" in \
        job["message"], job["message"]
    assert reads == []


def test_one_value_repeated_by_its_dictionary_is_counted_row_by_row(make_settings):
    """Dictionary encoding stores a repeated image once: the footer declares ~0.5 MB for rows that unpack to 2 MB,
    so the rows are counted while they are written."""
    client = datasets_app.create_app(make_settings(ZIP_MAX_TOTAL_MB=1)).test_client()
    dataset_id = client.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    same = _noise_png(9)
    table = parquet_bytes([{"image": (same, "same.png"), "text": "t"} for _ in range(4)], features=HF_FEATURES,
                          row_group_size=4)
    assert len(table) < 2**20
    job = upload(client, dataset_id, [("bomb.parquet", table)])
    assert job["status"] == "failed" and "unpacks to more than the limit of 1 MB" in job["message"], job
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["images"] == 0


def test_rows_are_read_a_few_at_a_time(monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    source = tmp_path / "t.parquet"
    source.write_bytes(parquet_bytes([{"image": (image_bytes(n), f"{n}.png")} for n in range(6)], row_group_size=6))
    parquet = pq.ParquetFile(source)
    assert parquet_import._batch_rows(parquet, ["image"]) == parquet_import.BATCH_ROWS
    monkeypatch.setattr(parquet_import, "BATCH_BYTES", max(parquet_import._chunk_sizes(parquet, ["image"])) * 2)
    assert parquet_import._batch_rows(parquet, ["image"]) == 2
    from studio.job_reporter import QuietReporter

    unpacked = parquet_import.extract_parquet(source, tmp_path / "rows", QuietReporter(), 2**30, "t.parquet")
    assert [row.name for row in unpacked.rows] == [f"{n}.png" for n in range(6)]


def test_parquet_files_are_offered_by_the_upload_and_refused_names_say_so(client, dataset_id):
    page = client.get(f"/d/{dataset_id}").get_data(as_text=True)
    assert ".parquet" in page
    response = client.post(f"/api/datasets/{dataset_id}/upload", data={"files": [(io.BytesIO(b"x"), "a.csv.gz")]},
                           content_type="multipart/form-data")
    assert response.status_code == 415 and "Parquet files of a Hugging Face dataset" in response.get_json()["error"]


def test_parquet_files_inside_a_zip_import_row_by_row(client, dataset_id):
    train = parquet_bytes([{"image": (image_bytes(31), "door.png"), "text": "tok, a door"},
                           {"image": (image_bytes(32), None), "text": "tok, a gate"}], features=HF_FEATURES)
    archive = zip_bytes([("set/data/train-00000-of-00001.parquet", train), ("set/loose.png", image_bytes(33))])
    job = upload(client, dataset_id, [("pack.zip", archive)])
    assert job["status"] == "completed", job
    assert _images(client, dataset_id) == {"door.png": "tok, a door", "loose.png": "",
                                           "train-00000-of-00001-000001.png": "tok, a gate"}
    assert job["result"]["tables"][0]["file"] == "pack.zip/set/data/train-00000-of-00001.parquet"
    assert job["result"]["skipped"] == []


def test_a_parquet_file_beside_others_that_cannot_be_read_is_skipped_with_its_reason(client, dataset_id):
    no_images = parquet_bytes([{"file_name": "a.png", "score": 0.5}])  # a table of something else
    archive = zip_bytes([("data/broken.parquet", b"PAR1 not really"), ("data/scores.parquet", no_images),
                         ("a.png", image_bytes(34))])
    job = upload(client, dataset_id, [("pack.zip", archive), ("loose.parquet", b"PAR1 nor this")])
    assert job["status"] == "completed", job
    assert _images(client, dataset_id) == {"a.png": ""}
    assert {s["name"]: s["reason"] for s in job["result"]["skipped"]} == {
        "pack.zip/data/broken.parquet": "is damaged or not a Parquet file",
        "pack.zip/data/scores.parquet": "has no image column (columns: file_name, score)",
        "loose.parquet": "is damaged or not a Parquet file"}


def test_rows_spread_over_a_big_table_read_only_their_row_groups(monkeypatch, tmp_path):
    """Three rows spread over a table too big to unpack whole: it was refused for the size of every row, and every
    row group was read and turned into Python bytes, for three images."""
    import pyarrow.parquet as pq

    from studio.job_reporter import QuietReporter

    source = tmp_path / "big.parquet"
    source.write_bytes(parquet_bytes([{"image": (_noise_png(n), f"{n}.png"), "text": f"row {n}"} for n in range(9)],
                                     features=HF_FEATURES, row_group_size=1, compression="none"))
    whole = sum(parquet_import._chunk_sizes(pq.ParquetFile(source), ["image", "text"]))
    read = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, group, **kw: read.append(group) or
                        real(self, group, **kw))
    unpacked = parquet_import.extract_parquet(source, tmp_path / "rows", QuietReporter(), whole // 2, "big.parquet",
                                              limit=3, spread=True)
    assert [(row.name, row.caption) for row in unpacked.rows] == [("1.png", "row 1"), ("4.png", "row 4"),
                                                                  ("7.png", "row 7")]
    assert read == [1, 4, 7] and unpacked.left == 6
