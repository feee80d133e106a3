"""Datasets in object storage, as a user renting a pod meets them: pushing an export again mirrors it (an image taken
out is gone from the prefix, other files there stay), a prefix pasted as `s3://bucket/prefix` works, a large file
shows its bytes as they move and stops at once, and a bad bucket name or the wrong region is a sentence. moto's
server stands in for R2."""

from __future__ import annotations

import io
import os
import time

import pytest
from botocore.exceptions import ClientError

from studio.s3 import Storage, StorageError
from tests.test_s3_import import make_client, moto, png, wait_job  # noqa: F401 - moto is a fixture

BIG = 12 * 2**20  # over boto3's multipart threshold: several blocks, in several threads


class Stop(Exception):
    pass


def _dataset_with(client, images: dict[str, bytes]) -> str:
    dataset_id = client.post("/api/datasets", json={"name": "Anna", "trigger_word": "anna"}).get_json()["id"]
    files = {"files": [(io.BytesIO(data), name) for name, data in images.items()]}
    response = client.post(f"/api/datasets/{dataset_id}/upload?wait=20", data=files, content_type="multipart/form-data")
    assert response.status_code in (200, 202), response.get_json()
    return dataset_id


def _export(client, dataset_id: str) -> None:
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "anna-v1"}).status_code == 202
    deadline = time.monotonic() + 60
    while client.get(f"/api/datasets/{dataset_id}/export").get_json()["job"]["status"] in {"queued", "running"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _push(client, dataset_id: str, body: dict) -> dict:
    started = client.post(f"/api/datasets/{dataset_id}/push-s3", json=body)
    assert started.status_code == 202, started.get_json()
    return wait_job(client, f"/api/datasets/{dataset_id}/push-s3/{started.get_json()['id']}")


def _import(client, dataset_id: str, body: dict) -> dict:
    started = client.post(f"/api/datasets/{dataset_id}/import-s3", json=body)
    assert started.status_code == 202, started.get_json()
    return wait_job(client, f"/api/datasets/{dataset_id}/import-s3/{started.get_json()['id']}")


def test_pushing_again_removes_what_the_export_no_longer_holds_and_nothing_else(moto, make_settings):  # noqa: F811
    moto.make_bucket("bk-mirror", {"sets/anna/notes-of-mine.md": b"kept"})  # not the studio's: never removed
    client = make_client(make_settings, **moto.env(S3_BUCKET="bk-mirror"))
    dataset_id = _dataset_with(client, {"a.png": png((250, 0, 0)), "b.png": png((0, 250, 0))})
    _export(client, dataset_id)
    first = _push(client, dataset_id, {"prefix": "sets/anna"})
    assert first["status"] == "completed", first
    assert first["result"]["removed"] == [] and first["result"]["others"] == 1
    assert "1 other file there left as they were" in first["message"]

    assert client.delete(f"/api/datasets/{dataset_id}/images/b.png").status_code in (200, 204)
    _export(client, dataset_id)
    again = _push(client, dataset_id, {"prefix": "sets/anna"})
    assert again["status"] == "completed", again
    assert again["result"]["removed"] == ["sets/anna/b.png", "sets/anna/b.txt"]
    assert "2 files of an earlier push removed" in again["message"]
    assert moto.keys("bk-mirror", "sets/anna/") == ["sets/anna/.studio-push.json", "sets/anna/a.png",
                                                    "sets/anna/a.txt", "sets/anna/dataset.json",
                                                    "sets/anna/notes-of-mine.md"]

    back = client.post("/api/datasets", json={"name": "Back"}).get_json()["id"]  # imports back as exported now
    state = _import(client, back, {"prefix": "sets/anna"})
    assert state["status"] == "completed", state
    assert state["result"]["imported"] == ["a.png"]
    assert ".studio-push.json" not in str(state["result"]["skipped"])  # the studio's record is not a dataset file


def test_a_prefix_pasted_as_an_s3_address_names_its_bucket(moto, make_settings):  # noqa: F811
    moto.make_bucket("bk-address", {"people/anna/a.png": png((250, 0, 0))})
    client = make_client(make_settings, **moto.env(S3_BUCKET="bk-other-default"))
    dataset_id = client.post("/api/datasets", json={"name": "Anna"}).get_json()["id"]
    state = _import(client, dataset_id, {"prefix": "s3://bk-address/people/anna/"})
    assert state["status"] == "completed", state
    assert state["result"]["source"] == {"bucket": "bk-address", "prefix": "people/anna/", "files": 1}
    assert state["config"]["bucket"] == "bk-address"  # an import resumed after a restart reads the same bucket

    clash = client.post(f"/api/datasets/{dataset_id}/import-s3",
                        json={"bucket": "bk-other", "prefix": "s3://bk-address/people/"})
    assert clash.status_code == 422 and "give one of them" in clash.get_json()["error"]


def test_a_bad_bucket_name_is_a_sentence_not_a_gateway_error(moto, make_settings):  # noqa: F811
    client = make_client(make_settings, **moto.env(S3_BUCKET="bk-any"))
    dataset_id = client.post("/api/datasets", json={"name": "Anna"}).get_json()["id"]
    response = client.post(f"/api/datasets/{dataset_id}/import-s3", json={"bucket": "My_Bucket!", "prefix": "x"})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"].startswith("'My_Bucket!' is not a valid bucket name")


@pytest.mark.parametrize("error, words", [
    ({"Code": "AuthorizationHeaderMalformed", "Message": "the region 'us-east-1' is wrong; expecting 'eu-west-1'",
      "Region": "eu-west-1"}, "(it answers for 'eu-west-1')"),
    ({"Code": "AuthorizationHeaderMalformed", "Message": "the region 'auto' is wrong; expecting 'eu-central-1'"},
     "(it answers for 'eu-central-1')"),
    ({"Code": "PermanentRedirect", "Message": "The bucket you are attempting to access must be addressed ..."},
     "set S3_REGION to the bucket's region"),
])
def test_the_wrong_region_says_which_setting_to_change(moto, make_settings, error, words):  # noqa: F811
    storage = Storage.from_settings(make_settings(**moto.env(S3_BUCKET="bk-region", S3_REGION="auto")))
    mapped = storage._error(ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}},
                                        "ListObjectsV2"), "checking bucket 'bk-region'")
    assert mapped.code == "wrong_region" and words in mapped.message
    assert "is in another region than S3_REGION='auto'" in mapped.message


def test_a_large_file_shows_its_bytes_as_they_move_both_ways(moto, make_settings, tmp_path):  # noqa: F811
    data = os.urandom(BIG)
    moto.make_bucket("bk-big", {"in/big.zip": data, "in/small.png": png((1, 2, 3))})
    storage = Storage.from_settings(make_settings(**moto.env(S3_BUCKET="bk-big")))
    heard: list[dict] = []
    files = storage.download_prefix("in", tmp_path / "down", on_progress=heard.append)
    assert (tmp_path / "down" / "big.zip").read_bytes() == data and len(files) == 2
    total = heard[-1]["bytes_total"]
    during = [p for p in heard if p["key"] == "in/big.zip" and p["files_done"] == 0]
    assert any(0 < p["bytes_done"] < BIG for p in during), heard[:5]  # inside the large file, before it ended
    assert heard[-1]["bytes_done"] == total and heard[-1]["files_done"] == 2

    heard.clear()
    storage.upload_files([(tmp_path / "down" / "big.zip", "out/big.zip")], on_progress=heard.append)
    assert any(p["files_done"] == 0 and 0 < p["bytes_done"] < BIG for p in heard)
    assert heard[-1] == {"files_done": 1, "files_total": 1, "bytes_done": BIG, "bytes_total": BIG,
                         "key": "out/big.zip"}


def test_a_stop_ends_a_large_download_in_the_middle_and_leaves_no_file(moto, make_settings, tmp_path):  # noqa: F811
    moto.make_bucket("bk-stop", {"in/big.zip": os.urandom(BIG)})
    storage = Storage.from_settings(make_settings(**moto.env(S3_BUCKET="bk-stop")))
    heard: list[dict] = []

    def stop_midway(progress: dict) -> None:
        heard.append(progress)
        if 0 < progress["bytes_done"] < BIG:
            raise Stop()

    with pytest.raises(Stop):
        storage.download_prefix("in", tmp_path / "down", on_progress=stop_midway)
    assert all(p["bytes_done"] < BIG for p in heard)
    assert [p.name for p in (tmp_path / "down").iterdir()] == []  # neither the file nor a part of it


def test_a_failing_record_read_only_means_nothing_is_removed(moto, make_settings, tmp_path):  # noqa: F811
    from studio import s3_mirror

    moto.make_bucket("bk-record", {"p/.studio-push.json": b"not json", "p/old.png": b"x"})
    storage = Storage.from_settings(make_settings(**moto.env(S3_BUCKET="bk-record")))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.png").write_bytes(png((9, 9, 9)))
    pushed = s3_mirror.mirror_folder(storage, folder, "p")
    assert pushed == {"keys": ["p/a.png"], "removed": [], "others": 1}
    assert moto.keys("bk-record", "p/") == ["p/.studio-push.json", "p/a.png", "p/old.png"]
    with pytest.raises(StorageError):
        s3_mirror.mirror_folder(Storage.from_settings(make_settings(**moto.env(S3_BUCKET="bk-no-such"))), folder, "p")


def test_a_key_that_may_read_but_not_write_fails_the_push_with_a_sentence(moto, make_settings):  # noqa: F811
    import json

    import boto3

    moto.make_bucket("bk-readonly")
    iam = boto3.client("iam", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id=moto.access_key,
                       aws_secret_access_key=moto.secret_key)
    iam.create_user(UserName="bk-reader")
    iam.put_user_policy(UserName="bk-reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"],
                                                "Resource": "*"}]}))
    key = iam.create_access_key(UserName="bk-reader")["AccessKey"]
    client = make_client(make_settings, **moto.env(S3_BUCKET="bk-readonly", S3_ACCESS_KEY_ID=key["AccessKeyId"],
                                                   S3_SECRET_ACCESS_KEY=key["SecretAccessKey"]))
    dataset_id = _dataset_with(client, {"a.png": png((250, 0, 0))})
    _export(client, dataset_id)
    with moto.checking_credentials():
        state = _push(client, dataset_id, {"prefix": "sets/anna"})
    assert state["status"] == "failed", state
    assert state["error"].startswith("Access to bucket 'bk-readonly' was denied while uploading sets/anna/"), state
    assert key["SecretAccessKey"] not in str(state) and "/tmp" not in state["error"]


def test_the_key_of_one_zip_in_the_bucket_imports_it(moto, make_settings):  # noqa: F811
    from tests.test_datasets_support import zip_bytes

    pack = zip_bytes([("set/a.png", png((250, 0, 0))), ("set/a.txt", b"anna in red"), ("set/b.png", png((0, 0, 9)))])
    moto.make_bucket("bk-onezip", {"packs/anna set.zip": pack, "packs/anna set.zip.bak": b"old"})
    client = make_client(make_settings, **moto.env(S3_BUCKET="bk-onezip"))
    dataset_id = client.post("/api/datasets", json={"name": "Anna"}).get_json()["id"]
    state = _import(client, dataset_id, {"prefix": "s3://bk-onezip/packs/anna set.zip"})
    assert state["status"] == "completed", state
    assert sorted(state["result"]["imported"]) == ["a.png", "b.png"]
    assert state["bytes_done"] == state["bytes_total"] == len(pack)

    missing = _import(client, dataset_id, {"prefix": "packs/nothing.zip"})
    assert missing["status"] == "failed"
    assert "Nothing was found under bk-onezip/packs/nothing.zip/: check the prefix (a folder" in missing["error"]


@pytest.mark.parametrize("limit", [None, 1])
def test_keys_that_differ_only_by_a_doubled_slash_both_arrive(moto, make_settings, limit):  # noqa: F811
    """`sets/anna/a.png` and `sets/anna//a.png` are two objects to S3 but one local path: the later one replaced the
    first (with its caption), and one picture was lost without a word. Both arrive, each with its own caption,
    also when a limit holds the later ones back until they are needed."""
    moto.make_bucket("bk-slashes", {"sets/anna/a.png": png((250, 0, 0)), "sets/anna/a.txt": b"red",
                                    "sets/anna//a.png": png((0, 0, 250)), "sets/anna//a.txt": b"blue"})
    client = make_client(make_settings, **moto.env(S3_BUCKET="bk-slashes"))
    dataset_id = client.post("/api/datasets", json={"name": "Slashes"}).get_json()["id"]
    state = _import(client, dataset_id, {"prefix": "sets/anna/", **({"limit": limit} if limit else {})})
    assert state["status"] == "completed", state
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert len(images) == (limit or 2), images
    if limit is None:
        assert sorted(image["caption"] for image in images) == ["blue", "red"]
