"""Hostile and odd uploads: every bad input from the issue, each leaving the server alive and writing
nothing outside the dataset folder (and the uploads temp folder)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import app as datasets_app
from app import zipimport
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, zip_bytes

# shared fixtures (pytest finds them as module attributes)
ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _files_outside(root: Path, dataset_id: str) -> set[str]:
    allowed = (root / "datasets" / dataset_id, root / ".uploads")
    found = set()
    for dirpath, _dirs, files in os.walk(root.parent):
        for name in files:
            path = Path(dirpath) / name
            if not any(a == path or a in path.parents for a in allowed):
                found.add(str(path))
    return found


@pytest.fixture
def guarded(client, dataset_id, studio_root):
    """Checks after the test that nothing new appeared outside the dataset and uploads folders."""
    before = _files_outside(studio_root, dataset_id)
    yield
    assert _files_outside(studio_root, dataset_id) - before == set()
    assert client.get("/health").status_code == 200


def _symlink_entry(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (0o120777 << 16)
    return info, target.encode()


def test_unsafe_entries_are_skipped_and_listed(client, dataset_id, studio_root, guarded):
    archive = zip_bytes([
        ("../escape.png", image_bytes(1)),
        ("ok/../../../escape2.png", image_bytes(2)),
        ("/abs/path.png", image_bytes(3)),
        ("C:/windows/drive.png", image_bytes(4)),
        ("D:\\windows\\back.png", image_bytes(5)),
        _symlink_entry("link.png", "/etc/passwd"),
        _symlink_entry("linkdir/evil.png", "../../.."),
        ("good.png", image_bytes(6)),
    ])
    job = upload(client, dataset_id, [("hostile.zip", archive)])
    assert job["status"] == "completed"
    assert job["result"]["imported"] == ["good.png"]
    reasons = {s["name"].split("/", 1)[1]: s["reason"] for s in job["result"]["skipped"]}
    assert "contains '..'" in reasons["../escape.png"] and "contains '..'" in reasons["ok/../../../escape2.png"]
    assert "absolute" in reasons["/abs/path.png"]
    assert "drive letter" in reasons["C:/windows/drive.png"] and "drive letter" in reasons["D:/windows/back.png"]
    assert "symbolic link" in reasons["link.png"] and "symbolic link" in reasons["linkdir/evil.png"]
    folder = studio_root / "datasets" / dataset_id
    assert not any(p.is_symlink() for p in folder.rglob("*"))


def test_zip_bomb_by_ratio_is_refused(client, dataset_id, studio_root, guarded):
    bomb = zip_bytes([("a.png", image_bytes(1)), ("zeros.png", b"\0" * (8 << 20))])
    job = upload(client, dataset_id, [("bomb.zip", bomb)])
    assert job["status"] == "failed"
    assert "ZIP_MAX_RATIO" in job["message"] and "ZIP bomb" in job["message"]
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["images"] == 0
    assert not list((studio_root / ".uploads").iterdir())


def test_zip_bomb_by_total_size_is_refused(make_settings, studio_root):
    app = datasets_app.create_app(make_settings(ZIP_MAX_TOTAL_MB=1, ZIP_MAX_RATIO=100000))
    c = app.test_client()
    did = c.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    noise = os.urandom(700 * 1024)  # stored: header sizes honest, total over 1 MB
    archive = zip_bytes([("a.png", noise), ("b.png", noise)], compression=zipfile.ZIP_STORED)
    job = upload(c, did, [("big.zip", archive)])
    assert job["status"] == "failed" and "ZIP_MAX_TOTAL_MB" in job["message"] and "1 MB" in job["message"]


def test_lying_headers_do_not_bypass_the_ratio_check(client, dataset_id, guarded):
    """A bomb entry whose central directory claims a small size is cut at the claimed size (CRC fails)."""
    data = bytearray(zip_bytes([("zeros.png", b"\0" * (4 << 20))]))
    real = (4 << 20).to_bytes(4, "little")
    fake = (1000).to_bytes(4, "little")
    data = bytes(data).replace(real, fake)
    job = upload(client, dataset_id, [("liar.zip", data)])
    assert job["status"] in {"completed", "failed"}
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["images"] == 0


def _encrypted(archive: bytes) -> bytes:
    data = bytearray(archive)
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            data[at + flag_offset] |= 0x01
            start = at + 4
    return bytes(data)


def test_encrypted_zip_is_refused(client, dataset_id, guarded):
    job = upload(client, dataset_id, [("secret.zip", _encrypted(zip_bytes([("a.png", image_bytes(1))])))])
    assert job["status"] == "failed" and "password-protected" in job["message"]


@pytest.mark.parametrize("content", [b"this is not a zip at all", b"PK\x03\x04" + b"\x00" * 40,
                                     zip_bytes([("a.png", image_bytes(1))])[:-30]])
def test_corrupt_archives_fail_cleanly(client, dataset_id, guarded, content):
    job = upload(client, dataset_id, [("broken.zip", content)])
    assert job["status"] == "failed"
    assert "damaged" in job["message"] and "broken.zip" in job["message"]


def test_damaged_entry_is_skipped_not_fatal(client, dataset_id, guarded):
    good = image_bytes(7)
    archive = bytearray(zip_bytes([("bad.png", image_bytes(8)), ("good.png", good)],
                                  compression=zipfile.ZIP_STORED))
    at = archive.find(b"IDAT")  # flip bytes inside the first entry's data: its CRC no longer matches
    archive[at + 8:at + 12] = b"\xff\xff\xff\xff"
    job = upload(client, dataset_id, [("mixed.zip", bytes(archive))])
    assert job["status"] == "completed"
    assert job["result"]["imported"] == ["good.png"]
    assert any("damaged entry" in s["reason"] for s in job["result"]["skipped"])


def test_non_images_zero_bytes_and_fake_images_are_listed(client, dataset_id, guarded):
    archive = zip_bytes([
        ("notes.pdf", b"%PDF-1.4"), ("script.sh", b"rm -rf /"), ("empty.png", b""),
        ("fake.jpg", b"GIF89a but not really an image"), ("nested.zip", zip_bytes([("x.png", image_bytes(1))])),
        ("real.png", image_bytes(9)), ("__MACOSX/._real.png", b"junk"),
    ])
    job = upload(client, dataset_id, [("mixed.zip", archive), ("loose-empty.jpg", b"")])
    assert job["status"] == "completed"
    assert job["result"]["imported"] == ["real.png"]
    reasons = {s["name"]: s["reason"] for s in job["result"]["skipped"]}
    assert reasons["mixed.zip/notes.pdf"] == "not an image (skipped)"
    assert reasons["mixed.zip/script.sh"] == "not an image (skipped)"
    assert reasons["mixed.zip/nested.zip"] == "not an image (skipped)"
    assert "empty (0 bytes)" in reasons["mixed.zip/empty.png"]
    assert reasons["mixed.zip/fake.jpg"] == "not an image the studio can read"
    assert "empty (0 bytes)" in reasons["loose-empty.jpg"]
    assert not any("MACOSX" in name for name in reasons)


def test_a_caption_file_without_its_image_in_the_zip_is_named(client, dataset_id, guarded):
    archive = zip_bytes([
        ("set/a.png", image_bytes(1)), ("set/a.txt", b"a cat"),
        ("set/b.txt", b"its image was left out of the ZIP"), ("set/clip.mp4", b"not read here"),
        ("set/clip.txt", b"a video's caption"), ("README.txt", b"made by me"),
    ])
    job = upload(client, dataset_id, [("set.zip", archive)])
    assert job["status"] == "completed" and job["result"]["imported"] == ["a.png"], job
    reasons = {s["name"]: s["reason"] for s in job["result"]["skipped"]}
    assert reasons["set.zip/set/b.txt"] == zipimport.LONE_CAPTION
    assert reasons["set.zip/README.txt"] == zipimport.LONE_CAPTION
    assert "set.zip/set/a.txt" not in reasons and "set.zip/set/clip.txt" not in reasons


def test_decompression_bomb_image_is_refused(make_settings):
    app = datasets_app.create_app(make_settings(MAX_IMAGE_PIXELS=1_000_000))
    c = app.test_client()
    did = c.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buffer, "PNG")  # 16 Mpx of one colour: a few KB on disk
    job = upload(c, did, [("huge.png", buffer.getvalue()), ("ok.png", image_bytes(1))])
    assert job["status"] == "completed"
    assert job["result"]["imported"] == ["ok.png"]
    reason = job["result"]["skipped"][0]["reason"]
    assert "16,000,000 pixels" in reason and "1,000,000" in reason and "MAX_IMAGE_PIXELS" in reason


def test_unicode_spaces_duplicates_nested_and_captions(client, dataset_id, studio_root, guarded):
    archive = zip_bytes([
        ("trip/día de playa 1.jpg", image_bytes(1, fmt="JPEG")),
        ("trip/día de playa 1.txt", "a beach, día".encode()),
        ("trip/more/photo.png", image_bytes(2)),
        ("trip/more/photo.txt", b"nested caption"),
        ("other/photo.png", image_bytes(3)),
        ("other/photo.txt", b"the other photo"),
        ("photo.PNG", image_bytes(4)),
        ("日本語 ファイル.webp", image_bytes(5, fmt="WEBP")),
    ])
    first = upload(client, dataset_id, [("trip.zip", archive)])
    assert first["status"] == "completed", first
    names = first["result"]["imported"]
    assert names == ["día de playa 1.jpg", "photo.png", "photo_2.png", "photo_3.png", "日本語 ファイル.webp"]
    folder = studio_root / "datasets" / dataset_id
    assert (folder / "día de playa 1.txt").read_text() == "a beach, día"
    assert (folder / "photo.txt").read_text() == "nested caption"
    assert (folder / "photo_2.txt").read_text() == "the other photo"
    assert not (folder / "photo_3.txt").exists()
    # the same upload again: nothing overwritten, everything gets a new suffix
    again = upload(client, dataset_id, [("trip.zip", archive), ("photo.png", image_bytes(6))])
    assert len(again["result"]["imported"]) == 6
    assert len(again["result"]["renamed"]) == 6
    assert (folder / "photo.txt").read_text() == "nested caption"
    listing = client.get(f"/api/datasets/{dataset_id}/images?limit=500").get_json()
    assert listing["total"] == 11
    flags = {img["name"]: img["flags"] for img in listing["images"]}
    assert flags["photo_4.png"].get("duplicate_of") == "photo.png"


def test_loose_txt_caption_pairs_with_uploaded_image(client, dataset_id, studio_root):
    job = upload(client, dataset_id, [("cat.png", image_bytes(1)), ("cat.txt", b"a cat on a sofa")])
    assert job["result"]["imported"] == ["cat.png"]
    assert (studio_root / "datasets" / dataset_id / "cat.txt").read_text() == "a cat on a sofa"


def test_upload_over_the_limit_is_413_with_the_limit(make_settings):
    app = datasets_app.create_app(make_settings(MAX_UPLOAD_MB=1))
    c = app.test_client()
    did = c.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    big = os.urandom((1 << 20) + 10)
    response = c.post(f"/api/datasets/{did}/upload", data={"files": [(io.BytesIO(big), "big.zip")]},
                      content_type="multipart/form-data")
    assert response.status_code == 413
    assert "1 MB" in response.get_json()["error"] and "MAX_UPLOAD_MB" in response.get_json()["error"]
    session = c.post(f"/api/datasets/{did}/uploads", json={"filename": "big.zip", "size": 5 << 20})
    assert session.status_code == 413 and "1 MB" in session.get_json()["error"]


def test_unsupported_file_types_are_refused_up_front(client, dataset_id):
    response = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "slides.pdf", "size": 10})
    assert response.status_code == 415 and ".jpg" in response.get_json()["error"]
    assert "videos to take frames from (.avi, .m4v, .mkv, .mov, .mp4, .webm)" in response.get_json()["error"]
    empty = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "a.png", "size": 0})
    assert empty.status_code == 422 and "empty" in empty.get_json()["error"]


@pytest.mark.parametrize("bad_id", ["..", "%2e%2e", "..%2f..%2fetc", "a%00b", "x" * 300])
def test_path_traversal_in_dataset_ids(client, bad_id):
    for url in (f"/api/datasets/{bad_id}", f"/api/datasets/{bad_id}/images", f"/d/{bad_id}"):
        assert client.get(url).status_code in (400, 404), url
    assert client.delete(f"/api/datasets/{bad_id}").status_code in (400, 404, 405)


@pytest.mark.parametrize("bad_name", ["..", "..%2f..%2fdataset.json", "%2e%2e%2fx.png", "dataset.json",
                                      ".lock", "a%00.png", "x.txt"])
def test_path_traversal_in_image_names(client, dataset_id, bad_name, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    (studio_root / "secret.png").write_bytes(image_bytes(2))
    for method, url, kwargs in (
        ("GET", f"/api/datasets/{dataset_id}/images/{bad_name}", {}),
        ("GET", f"/api/datasets/{dataset_id}/thumbs/{bad_name}", {}),
        ("PUT", f"/api/datasets/{dataset_id}/captions/{bad_name}", {"json": {"caption": "x"}}),
        ("DELETE", f"/api/datasets/{dataset_id}/images/{bad_name}", {}),
    ):
        response = client.open(url, method=method, **kwargs)
        assert response.status_code in (400, 404, 405), (method, url, response.status_code)
    response = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["../../secret.png"]})
    assert response.status_code == 400
    assert (studio_root / "secret.png").exists()
    assert (studio_root / "datasets" / dataset_id / "dataset.json").exists()
