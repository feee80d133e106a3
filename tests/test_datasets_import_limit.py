"""Take at most N images from a link: of a Hugging Face dataset only the first images, their captions and the
archives still needed are downloaded (the rest never leaves the hub); of a ZIP or a Parquet file only the first
images are unpacked, and the size limits count only them. The job says where it stopped; a limit larger than the
dataset changes nothing. The local stand-ins of the hub and the web serve the files."""

from __future__ import annotations

import numpy as np
import pytest

import app as datasets_app
from tests.fake_hub import FakeHub
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes
from tests.test_datasets_url_import import FILES, _dataset, web  # noqa: F401 - the stand-in web fixture

HF = "https://huggingface.co/datasets"
LOOSE = {  # five images with captions, then a ZIP and a Parquet file the limit never reaches
    **{f"photos/{n:02d}.png": image_bytes(20 + n, size=(80, 80)) for n in range(5)},
    **{f"photos/{n:02d}.txt": f"tok, photo {n}".encode() for n in range(5)},
    "photos/metadata.jsonl": b'{"file_name": "01.png", "text": "tok, a listed caption"}\n',
    "packs/more.zip": zip_bytes([("a.png", image_bytes(40, size=(80, 80)))]),
    "packs/rows.parquet": parquet_bytes([{"image": (image_bytes(41, size=(80, 80)), "r.png"), "text": "tok"}],
                                        features=HF_FEATURES),
}
SHARDS = {  # a dataset kept in Parquet shards, two rows each
    f"data/train-{n:05d}-of-00003.parquet": parquet_bytes(
        [{"image": (image_bytes(50 + 2 * n + row, size=(80, 80)), f"s{n}r{row}.png"), "text": f"tok, {n}.{row}"}
         for row in range(2)], features=HF_FEATURES, row_group_size=1)
    for n in range(3)}


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as server:
        server.add("datasets/me/loose", LOOSE, lfs=tuple(name for name in LOOSE if name.endswith(".png")))
        server.add("datasets/me/shards", SHARDS, lfs=tuple(SHARDS))
        heavy = {f"{n}.png": image_bytes(60 + n, size=(80, 80)) + b"\0" * 400_000 for n in range(4)}
        server.add("datasets/me/heavy", heavy, lfs=tuple(heavy))  # 1.6 MB in all, over MAX_UPLOAD_MB=1
        yield server


@pytest.fixture
def client(make_settings, hub):
    settings = make_settings(HF_ENDPOINT=hub.url, MAX_UPLOAD_MB="1", ALLOW_PRIVATE_URLS="1", ZIP_MAX_TOTAL_MB="1")
    return datasets_app.create_app(settings).test_client()


def _import(client, dataset_id: str, url: str, limit, spread: bool = False) -> dict:
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url, "limit": limit,
                                                                           **({"spread": True} if spread else {})})
    assert response.status_code == 202, response.get_json()
    return wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}")


def _captions(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def _downloaded(hub, repo: str) -> set[str]:
    return {r["path"].split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.file_requests()
            if f"/datasets/{repo}/resolve/" in r["path"]}


@pytest.mark.parametrize("spread, taken, note", [
    (False, ("00", "01"), "stopped at the limit of 2 images (5 more files left out)"),
    # of 00..04 spread: positions 1 and 3, each with its caption file
    (True, ("01", "03"), "took 2 images spread over the source (5 more files left out)")])
def test_only_the_images_taken_of_a_hub_dataset_and_their_captions_are_downloaded(client, hub, spread, taken, note):
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/loose", 2, spread=spread)
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, dataset_id) == {f"{n}.png": f"tok, photo {int(n)}" for n in taken}
    assert _downloaded(hub, "me/loose") == {f"photos/{n}.{ext}" for n in taken for ext in ("png", "txt")} | {
        "photos/metadata.jsonl"}
    assert job["result"]["limit"] == {"images": 2, "spread": spread, "reached": True, "files_left": 5,
                                      "images_left": 0}
    assert job["result"]["source"]["files"] == 5  # what was downloaded
    assert note in job["message"]


def test_parquet_shards_download_one_by_one_until_the_limit_is_reached(client, hub):
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/shards", 3)
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, dataset_id) == {"s0r0.png": "tok, 0.0", "s0r1.png": "tok, 0.1", "s1r0.png": "tok, 1.0"}
    assert _downloaded(hub, "me/shards") == {"data/train-00000-of-00003.parquet",
                                             "data/train-00001-of-00003.parquet"}  # the third never downloads
    assert job["result"]["limit"] == {"images": 3, "spread": False, "reached": True, "files_left": 1,
                                       "images_left": 1}
    assert "(1 more file and 1 more image left out)" in job["message"]


def test_a_dataset_over_the_download_limit_imports_its_first_images(client, hub):
    whole = _dataset(client)
    job = _import(client, whole, f"{HF}/me/heavy", None)
    assert job["status"] == "failed" and "take fewer images, or raise MAX_UPLOAD_MB" in job["error"], job
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/heavy", 2)
    assert job["status"] == "completed", job.get("error")
    assert sorted(_captions(client, dataset_id)) == ["0.png", "1.png"]
    too_many = _dataset(client)
    job = _import(client, too_many, f"{HF}/me/heavy", 3)
    assert job["status"] == "failed" and "in its first 3 images and captions, over the limit of 1 MB" in \
        job["error"], job
    assert _captions(client, too_many) == {}


def test_a_shard_that_would_pass_the_download_limit_fails_the_import_before_it_downloads(client, hub):
    noise = np.random.default_rng(0)
    shards = {f"data/train-{n}.parquet": parquet_bytes(
        [{"image": (image_bytes(90 + 2 * n + row, size=(80, 80)) + noise.bytes(200_000), None), "text": "tok"}
         for row in range(2)], features=HF_FEATURES) for n in range(3)}  # about 400 KB each
    hub.add("datasets/me/fat", shards, lfs=tuple(shards))
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/fat", 5)  # the third shard would pass MAX_UPLOAD_MB=1
    assert job["status"] == "failed" and "me/fat/data/train-2.parquet" in job["error"] and \
        "would take the download past the limit of 1 MB (MAX_UPLOAD_MB): take fewer images" in job["error"], job
    assert _downloaded(hub, "me/fat") == {"data/train-0.parquet", "data/train-1.parquet"}
    assert _captions(client, dataset_id) == {}
    job = _import(client, dataset_id, f"{HF}/me/fat", 4)  # fewer images: two shards are enough
    assert job["status"] == "completed" and len(_captions(client, dataset_id)) == 4
    job = _import(client, dataset_id, f"{HF}/me/fat", 3, spread=True)  # spread: every shard gives one
    assert job["status"] == "failed" and "take the first images instead of spreading them" in job["error"], job
    spread = _dataset(client)  # two spread over three shards: the first and the last, the middle one not downloaded
    job = _import(client, spread, f"{HF}/me/fat", 2, spread=True)
    assert job["status"] == "completed" and len(_captions(client, spread)) == 2, job
    assert job["result"]["limit"]["files_left"] == 1


def test_a_limit_above_the_dataset_takes_everything_and_says_nothing(client, hub):
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/shards", 100)
    assert job["status"] == "completed" and len(_captions(client, dataset_id)) == 6
    assert job["result"]["limit"] == {"images": 100, "spread": False, "reached": False, "files_left": 0,
                                       "images_left": 0}
    assert "limit" not in job["message"]


def test_a_zip_link_unpacks_only_its_first_images_by_name(client, web, monkeypatch):  # noqa: F811
    entries = [(f"set/{n}.png", image_bytes(70 + n, size=(80, 80)) + b"\0" * 300_000) for n in (3, 1, 2, 0)]
    entries += [("set/1.txt", b"tok, one"), ("set/3.txt", b"tok, three")]
    monkeypatch.setitem(FILES, "/many.zip", ("application/zip", {}, zip_bytes(entries)))
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{web}/many.zip", 2)  # the whole ZIP unpacks to 1.2 MB, over 1 MB
    assert job["status"] == "completed", job
    assert _captions(client, dataset_id) == {"0.png": "", "1.png": "tok, one"}
    assert job["result"]["limit"] == {"images": 2, "spread": False, "reached": True, "files_left": 0,
                                       "images_left": 2}
    everything = _dataset(client)
    job = _import(client, everything, f"{web}/many.zip", None)
    assert job["status"] == "failed" and "ZIP_MAX_TOTAL_MB" in job["error"]


def test_a_parquet_link_reads_only_its_first_rows(client, web, monkeypatch):  # noqa: F811
    rows = [{"image": (image_bytes(80 + n, size=(80, 80)), f"p{n}.png"), "text": f"tok, row {n}"} for n in range(5)]
    monkeypatch.setitem(FILES, "/table", ("application/octet-stream", {},
                                                  parquet_bytes(rows, features=HF_FEATURES, row_group_size=2)))
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{web}/table", 3)
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, dataset_id) == {"p0.png": "tok, row 0", "p1.png": "tok, row 1", "p2.png": "tok, row 2"}
    assert job["result"]["limit"]["images_left"] == 2


@pytest.mark.parametrize("limit", [0, -3, 2.5, "12", True, 10**7])
def test_a_limit_that_is_not_a_count_of_images_is_refused_before_any_job(client, limit):
    dataset_id = _dataset(client)
    response = client.post(f"/api/datasets/{dataset_id}/import-url",
                           json={"url": f"{HF}/me/loose", "limit": limit})
    assert response.status_code == 422 and "'limit' must be a whole number of images" in \
        response.get_json()["error"]


# -- spread over the whole source -------------------------------------------------------------------------------
def test_spread_positions_are_even_and_distinct():
    from app.import_limit import spread_indices

    assert spread_indices(10, 3) == [1, 5, 8] and spread_indices(100, 4) == [12, 37, 62, 87]
    assert spread_indices(3, 5) == [0, 1, 2] and spread_indices(0, 2) == []
    for total, count in ((7, 7), (1000, 999), (5, 1)):
        chosen = spread_indices(total, count)
        assert len(set(chosen)) == len(chosen) == min(total, count) and max(chosen) < total


def test_a_spread_limit_is_shared_evenly_by_the_archives_and_what_one_lacks_the_next_gives():
    from app.import_limit import Shares

    def parts(total, count, gives=None):
        shares, out = Shares(total, count), []
        for k in range(count):
            part = shares.next()
            out.append(part)
            shares.gave(min(part, (gives or {}).get(k, part)))
        return out

    assert parts(10, 3) == [3, 4, 3] and parts(2, 3) == [1, 0, 1] and parts(1, 3) == [0, 1, 0]
    assert parts(6, 3, gives={0: 0}) == [2, 4, 2]  # the first archive had no image: the second gives its part too
    assert sum(parts(997, 7)) == 997


def test_parquet_shards_spread_give_each_shard_its_part(client, hub):
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/shards", 3, spread=True)
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, dataset_id) == {"s0r1.png": "tok, 0.1", "s1r1.png": "tok, 1.1", "s2r1.png": "tok, 2.1"}
    assert len(_downloaded(hub, "me/shards")) == 3  # every shard: some of every part of the dataset
    assert job["result"]["limit"]["images_left"] == 3


def test_a_zip_and_a_parquet_link_spread_over_their_entries_and_rows(client, web, monkeypatch):  # noqa: F811
    entries = [(f"set/{n}.png", image_bytes(70 + n, size=(80, 80)) + b"\0" * 100_000) for n in range(8)]
    entries += [("set/5.txt", b"tok, five")]
    monkeypatch.setitem(FILES, "/many.zip", ("application/zip", {}, zip_bytes(entries)))
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{web}/many.zip", 2, spread=True)
    assert job["status"] == "completed", job
    assert _captions(client, dataset_id) == {"2.png": "", "6.png": ""}  # positions 2 and 6 of 0..7
    assert job["result"]["limit"]["images_left"] == 6

    rows = [{"image": (image_bytes(80 + n, size=(80, 80)), f"p{n}.png"), "text": f"tok, row {n}"} for n in range(9)]
    monkeypatch.setitem(FILES, "/table", ("application/octet-stream", {},
                                          parquet_bytes(rows, features=HF_FEATURES, row_group_size=2)))
    table = _dataset(client)
    job = _import(client, table, f"{web}/table", 3, spread=True)
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, table) == {"p1.png": "tok, row 1", "p4.png": "tok, row 4", "p7.png": "tok, row 7"}
    assert job["result"]["limit"]["images_left"] == 6


@pytest.mark.parametrize("body, says", [({"spread": True}, "give 'limit' with it"),
                                        ({"limit": 3, "spread": "yes"}, "'spread' must be true or false.")])
def test_spread_without_a_limit_or_not_a_yes_or_no_is_refused(client, body, says):
    dataset_id = _dataset(client)
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": f"{HF}/me/loose", **body})
    assert response.status_code == 422 and says in response.get_json()["error"]
