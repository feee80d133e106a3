"""A dataset of thousands of images: the gallery's listing, the dataset's figures, the index page and the caption
words read the captions in one pass (no path resolved again per image, no file read again until it changed), and
Select all gets every name in one small answer instead of every page of rows."""

from __future__ import annotations

import os

import pytest

from app import store
from app.store import Dataset
from tests import test_datasets_support as support

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

N = 300


def seed(studio_root, dataset_id: str, n: int = N) -> Dataset:
    """`n` images recorded as an import records them (the files' content is not read by a listing); every third has
    no caption."""
    dataset = Dataset(dataset_id, studio_root / "datasets" / dataset_id)
    with dataset.lock():
        meta = dataset.meta()
        for i in range(n):
            name = f"img_{i:04d}.png"
            (dataset.folder / name).write_bytes(b"not read")
            if i % 3:
                dataset.write_caption(name, f"a red cat, number {i}")
            meta["images"][name] = {"width": 64, "height": 64, "bytes": 8, "sha256": f"{i:064x}", "added_at": i}
        dataset.save_meta(meta)
    return dataset


@pytest.fixture
def counted(monkeypatch):
    """How often a path is resolved (`confined`) and a caption file read (`read_caption`)."""
    calls = {"confined": 0, "read_caption": 0}

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(store, "confined", counting("confined", store.confined))
    monkeypatch.setattr(Dataset, "read_caption", counting("read_caption", Dataset.read_caption))
    return calls


LISTINGS = ["/api/datasets/{id}/images?limit=150", "/api/datasets/{id}", "/api/datasets",
            "/api/datasets/{id}/captions/words", "/api/datasets/{id}/images?names=1&filter=uncaptioned"]


@pytest.mark.parametrize("url", LISTINGS)
def test_a_listing_resolves_no_path_per_image(client, dataset_id, studio_root, counted, url):
    seed(studio_root, dataset_id)
    assert client.get(url.format(id=dataset_id)).status_code == 200
    assert counted["confined"] <= 3  # was one per image: 300 here, 3,000 for a 3,000-image dataset


def test_captions_are_read_again_only_when_they_change(client, dataset_id, studio_root, counted):
    dataset = seed(studio_root, dataset_id)
    url = f"/api/datasets/{dataset_id}/images?limit=500"
    first = client.get(url).get_json()
    assert first["counts"] == {"all": N, "uncaptioned": N // 3, "flagged": 0}
    assert counted["read_caption"] == N - N // 3  # each caption file once

    counted["read_caption"] = 0
    again = client.get(url).get_json()
    assert again["images"] == first["images"] and counted["read_caption"] == 0  # nothing changed: nothing read

    # a caption saved in the page, one edited by hand in place (a longer text), one deleted, one written anew
    saved = client.put(f"/api/datasets/{dataset_id}/captions/img_0001.png", json={"caption": "a blue dog"})
    assert saved.status_code == 200
    with open(dataset.caption_path("img_0002.png"), "a", encoding="utf-8") as handle:
        handle.write(", in the snow")
    os.remove(dataset.caption_path("img_0004.png"))
    dataset.caption_path("img_0003.png").write_text("a green bird", "utf-8")
    counted["read_caption"] = 0
    rows = {row["name"]: row for row in client.get(url).get_json()["images"]}
    assert rows["img_0001.png"]["caption"] == "a blue dog"
    assert rows["img_0002.png"]["caption"] == "a red cat, number 2, in the snow"
    assert rows["img_0003.png"]["caption"] == "a green bird" and rows["img_0004.png"]["has_caption"] is False
    assert rows["img_0005.png"]["caption"] == "a red cat, number 5"
    assert counted["read_caption"] <= 4  # only the changed files
    summary = client.get(f"/api/datasets/{dataset_id}").get_json()
    assert summary["captioned"] == N - N // 3  # one caption more (img_0003), one fewer (img_0004)


def test_a_caption_symlinked_out_of_the_dataset_is_still_refused(client, dataset_id, studio_root, tmp_path):
    dataset = seed(studio_root, dataset_id, 3)
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    link = dataset.folder / "img_0001.txt"
    link.unlink()
    link.symlink_to(tmp_path / "secret.txt")
    for url in LISTINGS:  # never read, as read_caption refuses it; the listings go on with the other captions
        response = client.get(url.format(id=dataset_id))
        assert b"TOP SECRET" not in response.data
        assert response.status_code == 200
    rows = {r["name"]: r for r in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    assert not rows["img_0001.png"]["has_caption"] and rows["img_0002.png"]["has_caption"]
    # a link to another caption of the dataset stays inside: it is read
    link.unlink()
    link.symlink_to(dataset.folder / "img_0002.txt")
    rows = {r["name"]: r for r in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    assert rows["img_0001.png"]["caption"] == "a red cat, number 2"


def test_select_all_gets_every_matching_name_in_one_small_answer(client, dataset_id, studio_root):
    seed(studio_root, dataset_id)
    url = f"/api/datasets/{dataset_id}/images"
    every = client.get(f"{url}?names=1")
    body = every.get_json()
    assert body["total"] == N and len(body["names"]) == N and "images" not in body  # names only, beyond MAX_LIMIT rows
    assert body["names"][:3] == ["img_0000.png", "img_0001.png", "img_0002.png"]  # in the gallery's order
    assert len(every.data) < 30 * N  # a name each: 3,000 images answer in ~60 KB, where their rows took ~880 KB
    uncaptioned = client.get(f"{url}?names=1&filter=uncaptioned").get_json()
    assert uncaptioned["total"] == N // 3 and all(int(n[4:8]) % 3 == 0 for n in uncaptioned["names"])
    found = client.get(f"{url}?names=1&q=number 12&sort=newest").get_json()
    assert found["names"] == [f"img_0{n}.png" for n in (128, 127, 125, 124, 122, 121)]  # the newest first
    assert client.get(f"{url}?names=yes").status_code == 400
