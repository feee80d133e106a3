"""A preview is made again unless it was made from the picture as it is now: one decoded from a picture an edit
replaced meanwhile, or a picture Revert put back with its older time, was taken for current and shown until the
next edit."""

from __future__ import annotations

import os

from studio.thumbnails import cached_picture
from tests import test_datasets_support as support

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def test_a_preview_made_while_its_picture_was_replaced_is_made_again(tmp_path):
    source, target = tmp_path / "cat.png", tmp_path / "cat.webp"
    source.write_bytes(b"old picture")

    def make_while_an_edit_lands(path):
        made = path.read_bytes()
        path.write_bytes(b"edited picture")  # the edit lands while the old one is decoded
        os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
        return made

    assert cached_picture(source, target, make_while_an_edit_lands).read_bytes() == b"old picture"
    assert cached_picture(source, target, lambda path: path.read_bytes()).read_bytes() == b"edited picture"
    calls = []
    assert cached_picture(source, target, lambda path: calls.append(path) or b"again") == target and calls == []


def test_a_picture_put_back_with_its_older_time_gets_its_own_preview(tmp_path):
    source, target = tmp_path / "cat.png", tmp_path / "cat.webp"
    source.write_bytes(b"original")
    os.utime(source, ns=(10**18, 10**18))
    original_time = source.stat().st_mtime_ns
    cached_picture(source, target, lambda path: path.read_bytes())
    source.write_bytes(b"cropped")
    os.utime(source, ns=(original_time + 10**9,) * 2)
    assert cached_picture(source, target, lambda path: path.read_bytes()).read_bytes() == b"cropped"
    source.write_bytes(b"original")  # Revert: the kept file comes back with its own, older time
    os.utime(source, ns=(original_time, original_time))
    assert cached_picture(source, target, lambda path: path.read_bytes()).read_bytes() == b"original"


def test_the_thumbnail_made_at_import_is_taken_as_the_pictures_own(client, dataset_id, monkeypatch):
    """The import makes each thumbnail as it reads the picture: the gallery must not make them all again."""
    from studio import thumbnails

    support.upload(client, dataset_id, [("a.png", support.image_bytes(1)), ("b.png", support.image_bytes(2))])
    made = []
    monkeypatch.setattr(thumbnails, "thumbnail_bytes", lambda path, size: made.append(path) or b"again")
    for name in ("a.png", "b.png"):
        assert client.get(f"/api/datasets/{dataset_id}/thumbs/{name}").status_code == 200
    assert made == []

