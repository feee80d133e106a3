"""A bucket prefix is more than a folder of images: a checkpoint or notes beside them are not downloaded nor counted
against MAX_UPLOAD_MB (a 3 MB file beside the images no longer makes the import "too large"), and an object the keys
may not read is skipped with its reason instead of failing the whole import. A moto S3 server stands in for the
bucket; the one refusal is the store's own AccessDenied answer for that object."""

from __future__ import annotations

import pytest

from studio.s3 import Storage
from tests.test_s3_import import make_client, moto, png, wait_job  # noqa: F401 - moto is a fixture


def _import(client, prefix: str) -> dict:
    dataset = client.post("/api/datasets", json={"name": "Anna", "trigger_word": "annaxyz"}).get_json()
    started = client.post(f"/api/datasets/{dataset['id']}/import-s3", json={"prefix": prefix})
    assert started.status_code == 202, started.get_json()
    return wait_job(client, f"/api/datasets/{dataset['id']}/import-s3/{started.get_json()['id']}")


def test_files_that_give_no_image_are_not_downloaded_nor_counted(moto, make_settings):  # noqa: F811
    moto.make_bucket("mixed-bucket", {
        "anna/a.png": png((250, 0, 0)),
        "anna/a.txt": b"anna in red",
        "anna/model.safetensors": b"\0" * (3 * 2**20),  # over MAX_UPLOAD_MB=1 on its own
        "anna/notes.md": b"hello",
    })
    client = make_client(make_settings, MAX_UPLOAD_MB="1", **moto.env(S3_BUCKET="mixed-bucket"))
    state = _import(client, "anna/")
    assert state["status"] == "completed", state
    result = state["result"]
    assert result["imported"] == ["a.png"]
    skipped = {s["name"]: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"model.safetensors", "notes.md"} and all("not downloaded" in r for r in skipped.values())
    assert result["source"]["files"] == 4
    assert state["bytes_total"] < 2**20  # the checkpoint's 3 MB were never on the way


def test_an_object_the_keys_may_not_read_is_skipped_with_its_reason(moto, make_settings, monkeypatch):  # noqa: F811
    from botocore.exceptions import ClientError

    moto.make_bucket("denied-bucket", {"anna/a.png": png((250, 0, 0)), "anna/b.png": png((0, 250, 0))})
    real = Storage.from_settings

    def from_settings(*args, **kwargs):
        storage = real(*args, **kwargs)
        download = storage.client.download_file

        def guarded(bucket, key, filename, **options):
            if key.endswith("b.png"):  # a bucket policy that denies this one object
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                                   "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
            return download(bucket, key, filename, **options)

        storage.client.download_file = guarded
        return storage

    monkeypatch.setattr(Storage, "from_settings", from_settings)
    client = make_client(make_settings, **moto.env(S3_BUCKET="denied-bucket"))
    state = _import(client, "anna/")
    assert state["status"] == "completed", state
    assert state["result"]["imported"] == ["a.png"]
    denied = "the storage keys may not read it (access denied)"
    assert state["result"]["skipped"] == [{"name": "b.png", "reason": denied}]


@pytest.mark.parametrize("code", ["NoSuchBucket", "InternalError"])
def test_other_refusals_still_end_the_import_with_their_sentence(moto, make_settings, monkeypatch, code):  # noqa: F811
    from botocore.exceptions import ClientError

    moto.make_bucket(f"broken-{code.lower()}", {"anna/a.png": png((250, 0, 0))})
    real = Storage.from_settings

    def from_settings(*args, **kwargs):
        storage = real(*args, **kwargs)

        def broken(*_args, **_options):
            raise ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                              "GetObject")

        storage.client.download_file = broken
        return storage

    monkeypatch.setattr(Storage, "from_settings", from_settings)
    client = make_client(make_settings, **moto.env(S3_BUCKET=f"broken-{code.lower()}"))
    state = _import(client, "anna/")
    assert state["status"] == "failed" and state["error"]
