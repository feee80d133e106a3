"""Parquet tables laid out as people bring them from the hub, beyond what `datasets.push_to_hub` writes: a
WebDataset turned into Parquet (`jpg` and `txt`), image bytes in a column named `image_bytes`, COCO's
`sentences`, and a caption column that pandas wrote as a category (dictionary-encoded)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from app import parquet_import
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _table(columns: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, row_group_size=2)
    return sink.getvalue()


def _images(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def test_odd_column_names_are_still_found():
    def columns(**types) -> tuple:
        return parquet_import.choose_columns(pa.schema(list(types.items())))

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert columns(jpg=pa.large_binary(), txt=pa.string(), __key__=pa.string()) == ("jpg", "txt")
    assert columns(image_bytes=pa.binary(), caption=pa.string()) == ("image_bytes", "caption")
    assert columns(jpg_data=pa.binary(), image=pa.binary()) == ("image", None)  # a whole name first
    assert columns(image=image, sentences=pa.list_(pa.string())) == ("image", "sentences")
    assert columns(image=image, text=pa.dictionary(pa.int32(), pa.string())) == ("image", "text")
    assert columns(image=image, txt=pa.string(), text=pa.string()) == ("image", "text")  # the usual name first
    assert columns(data=pa.binary(), databytes=pa.binary()) == (None, None)  # nothing says image


def test_a_webdataset_table_imports_with_its_captions(client, dataset_id):
    table = _table({"__key__": ["a", "b"], "jpg": pa.array([image_bytes(1), image_bytes(2)], type=pa.large_binary()),
                    "txt": ["tok, a red bike", "tok, a blue door"]})
    job = upload(client, dataset_id, [("shard-0000.parquet", table)])
    assert job["status"] == "completed", job
    assert sorted(_images(client, dataset_id).values()) == ["tok, a blue door", "tok, a red bike"]


def test_image_bytes_and_a_category_caption_column_import(client, dataset_id):
    captions = pa.array(["tok, same look", "tok, same look", None]).dictionary_encode()
    table = _table({"image_bytes": [image_bytes(3), image_bytes(4), image_bytes(5)], "text": captions})
    job = upload(client, dataset_id, [("rows.parquet", table)])
    assert job["status"] == "completed", job
    assert sorted(_images(client, dataset_id).values()) == ["", "tok, same look", "tok, same look"]


def _multi_picture_jpeg() -> bytes:
    """A JPEG with a second picture after it (MPF), as a phone writes its gain map or depth map: Pillow says MPO."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), "red").save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (48, 32))])
    return buffer.getvalue()


def test_a_phone_jpeg_with_a_second_picture_is_taken_as_a_jpeg(client, dataset_id):
    data = _multi_picture_jpeg()
    assert parquet_import._extension(data) == (".jpg", "")
    table = _table({"image": [{"bytes": data, "path": "IMG_0007.JPG"}], "text": ["tok, a red wall"]})
    job = upload(client, dataset_id, [("phone.parquet", table)])
    assert job["status"] == "completed" and not job.get("skipped"), job
    assert _images(client, dataset_id) == {"IMG_0007.jpg": "tok, a red wall"}


def test_a_row_group_too_big_to_hold_in_memory_is_refused_with_what_to_do(client, dataset_id, monkeypatch):
    from tests.parquet_files import parquet_bytes

    rows = [{"image": (image_bytes(i), f"{i}.png"), "text": f"photo {i}"} for i in range(4)]
    monkeypatch.setattr(parquet_import, "MAX_GROUP_BYTES", 1300)  # a group of one row: ~950 bytes; of four: ~1,800
    refused = upload(client, dataset_id, [("one-group.parquet", parquet_bytes(rows, row_group_size=4))])
    assert "keeps" in refused["error"] and "in one row group" in refused["error"], refused
    assert "row_group_size=100" in refused["error"] and _images(client, dataset_id) == {}
    small = upload(client, dataset_id, [("small-groups.parquet", parquet_bytes(rows, row_group_size=1))])
    assert small["status"] == "completed" and len(_images(client, dataset_id)) == 4, small
