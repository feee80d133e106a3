"""Every image type a photographer brings. Photos from a phone: a HEIC (what an iPhone saves) imports like a
JPEG, shows in every browser (its thumbnail and a full-size JPEG of it, upright), crops and rotates in its own
format, captions, and exports as a JPEG the trainer reads, upright; an AVIF with transparency exports as a PNG
that keeps it. TIFF and BMP (scans, camera exports) import and export the same way, and a 16-bit greyscale PNG
or TIFF is shown, measured, captioned and trained as itself, not clipped to white."""

from __future__ import annotations

import io
import re

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageCms

from app import imaging
from studio import exports
from studio.pixels import eight_bit, in_srgb
from studio.workspace import Workspace
from tests import test_datasets_support as support
from tests.icc_profiles import p3_profile
from tests.test_datasets_support import upload, wait_job, zip_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

pillow_heif.register_heif_opener()


def heic_photo(size=(96, 64), orientation: int | None = 6) -> bytes:
    """A HEIC with a red top-left corner, taken with the phone turned (EXIF orientation 6: shown turned
    clockwise, as a portrait), as a phone saves it."""
    image = Image.new("RGB", size, (20, 40, 200))
    image.paste((255, 0, 0), (0, 0, 16, 16))
    extra = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=95, **extra)
    return buffer.getvalue()


def _opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _red_at(image: Image.Image) -> str:
    """Which corner of the picture is red: where the photo's top-left corner went."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    corners = {"top-left": rgb[2, 2], "top-right": rgb[2, -3], "bottom-left": rgb[-3, 2], "bottom-right": rgb[-3, -3]}
    return next(name for name, pixel in corners.items() if pixel[0] > 200 and pixel[2] < 80)


def test_heic_is_an_image_type_here_and_the_file_pickers_offer_it(client, dataset_id):
    assert {".heic", ".heif", ".avif"} <= imaging.IMAGE_EXTENSIONS
    assert imaging.shown_by_browsers("a.AVIF") and not imaging.shown_by_browsers("IMG_0001.HEIC")
    for page in (f"/d/{dataset_id}", "/express"):
        accept = re.search(r'accept="([^"]*)"', client.get(page).get_data(as_text=True)).group(1).split(",")
        assert {".heic", ".heif", ".avif", ".jpg", ".zip"} <= set(accept), (page, accept)


def test_an_iphone_photo_imports_shows_upright_edits_and_exports_as_a_jpeg(client, dataset_id, studio_root):
    job = upload(client, dataset_id, [("IMG_0001.HEIC", heic_photo()), ("IMG_0001.txt", b"a red corner")])
    assert job["status"] == "completed" and job["result"]["imported"] == ["IMG_0001.heic"], job
    base = f"/api/datasets/{dataset_id}"
    row = client.get(f"{base}/images").get_json()["images"][0]
    assert row["name"] == "IMG_0001.heic" and (row["width"], row["height"]) == (64, 96)  # as people see it

    thumb = client.get(f"{base}/thumbs/IMG_0001.heic")
    assert thumb.status_code == 200 and _opened(thumb.data).format == "WEBP"
    shown = client.get(f"{base}/images/IMG_0001.heic")  # what the editor shows: a JPEG, not the HEIC
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg"
    view = _opened(shown.data)
    assert view.size == (64, 96) and _red_at(view) == "top-right"
    kept = studio_root / "datasets" / dataset_id / "IMG_0001.heic"
    assert _opened(kept.read_bytes()).format == "HEIF"  # the upload itself is kept as it came

    # crop and rotate in its own format; the view follows, the original shows as it came, Revert brings it back
    rotated = client.post(f"{base}/images/IMG_0001.heic/edit", json={"op": "rotate", "degrees": 90})
    assert rotated.status_code == 200, rotated.get_json()
    assert (rotated.get_json()["width"], rotated.get_json()["height"]) == (96, 64)
    assert _opened(kept.read_bytes()).format == "HEIF"
    view = _opened(client.get(f"{base}/images/IMG_0001.heic").data)
    assert view.size == (96, 64) and _red_at(view) == "bottom-right"
    original = client.get(f"{base}/images/IMG_0001.heic/original")
    assert original.mimetype == "image/jpeg" and _opened(original.data).size == (64, 96)
    assert client.post(f"{base}/images/IMG_0001.heic/edit", json={"op": "revert"}).status_code == 200
    assert _opened(client.get(f"{base}/images/IMG_0001.heic").data).size == (64, 96)  # not the rotated view

    # what the caption service is sent
    assert _opened(imaging.encode_for_caption(kept, 1_000_000)).size == (64, 96)

    assert client.post(f"{base}/export", json={"name": "phone"}).status_code == 202
    done = wait_job(client, f"{base}/export", key="job")
    assert done["status"] == "completed", done
    folder = exports.version_dir(Workspace(studio_root), done["result"]["version"])
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "IMG_0001.jpg", "IMG_0001.txt", "dataset.json"]
    exported = _opened((folder / "IMG_0001.jpg").read_bytes())
    assert exported.format == "JPEG" and exported.size == (64, 96) and _red_at(exported) == "top-right"
    assert (folder / "IMG_0001.txt").read_text() == "tok, a red corner\n"
    assert exports.hash_folder(folder) == done["result"]["version"]


def test_heic_photos_in_a_zip_import_and_a_broken_one_is_skipped_with_its_reason(client, dataset_id):
    archive = zip_bytes([("phone/IMG_0002.heic", heic_photo(orientation=None)), ("phone/IMG_0002.txt", b"flat"),
                         ("phone/IMG_0003.heic", b"ftypheic but not really a photo")])
    job = upload(client, dataset_id, [("phone.zip", archive)])
    assert job["status"] == "completed" and job["result"]["imported"] == ["IMG_0002.heic"], job
    [skipped] = job["result"]["skipped"]
    assert skipped == {"name": "phone.zip/phone/IMG_0003.heic", "reason": "not an image the studio can read"}
    row = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"][0]
    assert (row["width"], row["height"], row["caption"]) == (96, 64, "flat")


@pytest.mark.parametrize("fmt, ext", [("AVIF", ".avif"), ("HEIF", ".heic")])
def test_a_cut_out_exports_as_a_png_that_keeps_its_transparency(client, dataset_id, studio_root, fmt, ext):
    cut_out = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    cut_out.paste((240, 200, 10, 255), (20, 20, 60, 60))
    buffer = io.BytesIO()
    cut_out.save(buffer, fmt, quality=95)
    upload(client, dataset_id, [(f"logo{ext}", buffer.getvalue())])
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "logo"}).status_code == 202
    done = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    folder = exports.version_dir(Workspace(studio_root), done["result"]["version"])
    exported = _opened((folder / "logo.png").read_bytes())
    assert exported.mode == "RGBA" and exported.getpixel((2, 2))[3] == 0 and exported.getpixel((40, 40))[3] > 240
    # the editor's view puts the transparent part on white, as the caption service sees it
    view = _opened(client.get(f"/api/datasets/{dataset_id}/images/logo{ext}").data)
    if fmt == "HEIF":
        assert view.format == "JPEG" and view.getpixel((2, 2)) == (255, 255, 255)


def _grey16(size=(128, 64)) -> Image.Image:
    """A 16-bit greyscale ramp, dark on the left, light on the right (what a scanner or a 16-bit export makes)."""
    ramp = np.linspace(0, 65535, size[0]).round().astype(np.uint16)
    return Image.fromarray(np.tile(ramp, (size[1], 1)))


def _mean(image: Image.Image, box) -> float:
    """The mean brightness in `box` as a browser shows it (a 16-bit PNG by its full range)."""
    return float(np.asarray(eight_bit(image).convert("L").crop(box), dtype=np.float64).mean())


@pytest.mark.parametrize("name, fmt", [("scan.png", "PNG"), ("scan.tif", "TIFF")])
def test_a_16_bit_greyscale_picture_is_not_clipped_to_white(client, dataset_id, studio_root, name, fmt):
    buffer = io.BytesIO()
    _grey16().save(buffer, fmt)
    assert upload(client, dataset_id, [(name, buffer.getvalue())])["status"] == "completed"
    base = f"/api/datasets/{dataset_id}"
    kept = studio_root / "datasets" / dataset_id / name
    assert imaging.inspect_image(kept, 10**6).dhash == "f" * 16  # measured on the ramp: each step lighter
    thumb = _opened(client.get(f"{base}/thumbs/{name}").data)
    view = _opened(client.get(f"{base}/images/{name}").data)
    for picture in (thumb, view, _opened(imaging.encode_for_caption(kept, 1_000_000))):
        width, height = picture.size
        assert _mean(picture, (0, 0, width // 4, height)) < 60, picture  # the dark side stays dark
        assert _mean(picture, (3 * width // 4, 0, width, height)) > 190, picture
    assert client.post(f"{base}/export", json={"name": "scan"}).status_code == 202
    done = wait_job(client, f"{base}/export", key="job")
    folder = exports.version_dir(Workspace(studio_root), done["result"]["version"])
    exported = _opened((folder / "scan.png").read_bytes() if fmt == "PNG" else (folder / "scan.jpg").read_bytes())
    assert exported.mode in {"L", "RGB"} and _mean(exported, (0, 0, 32, 64)) < 60
    assert _mean(exported, (96, 0, 128, 64)) > 190
    assert exports.hash_folder(folder) == done["result"]["version"]


@pytest.mark.parametrize("name, fmt", [("film.tiff", "TIFF"), ("old.bmp", "BMP")])
def test_a_tiff_or_bmp_imports_rotates_in_its_format_and_exports_as_a_jpeg(client, dataset_id, studio_root, name,
                                                                          fmt):
    image = Image.new("RGB", (96, 64), (20, 40, 200))
    image.paste((255, 0, 0), (0, 0, 16, 16))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    assert upload(client, dataset_id, [(name, buffer.getvalue())])["status"] == "completed"
    base = f"/api/datasets/{dataset_id}"
    shown = client.get(f"{base}/images/{name}")
    assert shown.mimetype == ("image/jpeg" if fmt == "TIFF" else "image/bmp")  # browsers show a BMP as it is
    edited = client.post(f"{base}/images/{name}/edit", json={"op": "rotate", "degrees": 90})
    assert edited.status_code == 200, edited.get_json()
    kept = _opened((studio_root / "datasets" / dataset_id / name).read_bytes())
    assert kept.format == fmt and kept.size == (64, 96) and _red_at(kept) == "top-right"
    assert client.post(f"{base}/export", json={"name": "old"}).status_code == 202
    done = wait_job(client, f"{base}/export", key="job")
    folder = exports.version_dir(Workspace(studio_root), done["result"]["version"])
    exported = _opened((folder / f"{name.split('.')[0]}.jpg").read_bytes())
    assert exported.size == (64, 96) and _red_at(exported) == "top-right"


def test_the_trainer_reads_a_16_bit_greyscale_png_as_itself(tmp_path):
    from trainer.engine.data import ImageItem, Sample, load_pixels

    _grey16((256, 256)).save(tmp_path / "scan.png")
    assert _opened((tmp_path / "scan.png").read_bytes()).mode == "I;16"
    seen = load_pixels(Sample(ImageItem(tmp_path / "scan.png", "a ramp", "", 256, 256), (256, 256)))
    assert _mean(seen, (0, 0, 64, 256)) < 60 and _mean(seen, (192, 0, 256, 256)) > 190


P3_GREEN = (60, 200, 60)  # in Display P3: a green that sRGB writes as more saturated numbers


def _p3_photo(fmt: str = "JPEG", mode: str = "RGB", size=(64, 64)) -> bytes:
    colour = P3_GREEN + ((255,) if mode == "RGBA" else ())
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt, icc_profile=p3_profile(), **({"quality": 100} if fmt != "PNG"
                                                                                   else {}))
    return buffer.getvalue()


def _saturated(rgb) -> bool:
    """The P3 green read in sRGB (about (0, 205, 0)), not as if its numbers were sRGB already (60, 200, 60)."""
    red, green, blue = rgb[:3]
    return red < 30 and blue < 30 and green > 190


def test_colours_in_another_profile_are_turned_into_srgb():
    for mode in ("RGB", "RGBA"):
        image = Image.new(mode, (4, 4), P3_GREEN + ((128,) if mode == "RGBA" else ()))
        image.info["icc_profile"] = p3_profile()
        converted = in_srgb(image)
        assert converted.mode == mode and _saturated(converted.getpixel((0, 0))) and "icc_profile" not in converted.info
        if mode == "RGBA":
            assert converted.getpixel((0, 0))[3] == 128  # the alpha as it was
    srgb = Image.new("RGB", (4, 4), P3_GREEN)
    srgb.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert in_srgb(srgb) is srgb  # sRGB already: nothing to do
    for broken in (b"not a profile", p3_profile()[:200]):
        odd = Image.new("RGB", (4, 4), P3_GREEN)
        odd.info["icc_profile"] = broken
        assert in_srgb(odd) is odd  # read as sRGB rather than refused
    grey = Image.new("L", (4, 4), 90)
    grey.info["icc_profile"] = p3_profile()  # an RGB profile on a greyscale picture: left alone
    assert in_srgb(grey) is grey


def test_an_iphone_photo_in_display_p3_is_shown_captioned_and_trained_in_its_colours(client, dataset_id,
                                                                                       studio_root):
    from trainer.engine.data import ImageItem, Sample, load_pixels

    heic = io.BytesIO()
    Image.new("RGB", (64, 64), P3_GREEN).save(heic, "HEIF", quality=100, icc_profile=p3_profile())
    files = [("p3.jpg", _p3_photo()), ("p3cut.png", _p3_photo("PNG", "RGBA")), ("phone.heic", heic.getvalue())]
    assert upload(client, dataset_id, files)["status"] == "completed"
    base = f"/api/datasets/{dataset_id}"
    folder = studio_root / "datasets" / dataset_id
    for name in ("p3.jpg", "p3cut.png", "phone.heic"):
        assert _saturated(_opened(client.get(f"{base}/thumbs/{name}").data).convert("RGB").getpixel((32, 32))), name
        assert _saturated(_opened(imaging.encode_for_caption(folder / name, 10**6)).getpixel((32, 32))), name
    assert _saturated(_opened(client.get(f"{base}/images/phone.heic").data).getpixel((32, 32)))  # the editor's view
    assert client.post(f"{base}/export", json={"name": "p3"}).status_code == 202
    done = wait_job(client, f"{base}/export", key="job")
    exported = exports.version_dir(Workspace(studio_root), done["result"]["version"])
    assert (exported / "p3.jpg").read_bytes() == _p3_photo()  # as it is, profile and all: the trainer reads it
    assert _opened((exported / "p3cut.png").read_bytes()).info.get("icc_profile") == p3_profile()
    converted = _opened((exported / "phone.jpg").read_bytes())  # made from the HEIC: in sRGB, no profile
    assert "icc_profile" not in converted.info and _saturated(converted.getpixel((32, 32)))
    for name in ("p3.jpg", "p3cut.png", "phone.jpg"):
        seen = load_pixels(Sample(ImageItem(exported / name, "", "", 64, 64), (64, 64)))
        assert seen.mode == "RGB" and _saturated(seen.getpixel((32, 32))), name


def test_an_export_converts_on_several_threads_and_stops_at_once(client, dataset_id, studio_root, monkeypatch,
                                                                 ds_app):
    """Twenty-four phone photos: they are converted a few at a time, in the gallery's order; a stop leaves no
    version and no half-built folder, and the photos not started are never converted."""
    import threading
    import time

    from app import export

    photos = [(f"IMG_{n:04d}.heic", heic_photo(orientation=None) + bytes(n)) for n in range(24)]  # not copies
    assert upload(client, dataset_id, photos)["status"] == "completed"
    place, started, running, most = export.training_copy, [], [0], [0]
    lock = threading.Lock()

    def slow(source, folder, stem):
        with lock:
            started.append(stem)
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        try:
            return place(source, folder, stem)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(export, "training_copy", slow)
    monkeypatch.setattr(export, "EXPORT_THREADS", 2)
    response = client.post(f"/api/datasets/{dataset_id}/export", json={"name": "phone"})
    assert response.status_code == 202
    deadline = time.monotonic() + 20
    while len(started) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    ds_app.extensions["job_store"].request_stop(response.get_json()["id"], reason="Stopping: you asked.")
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "stopped", job
    assert most[0] == 2 and len(started) < 24, started  # two at once, and not the whole dataset after the stop
    versions = exports.versions_root(Workspace(studio_root))
    assert not versions.exists() or not list(versions.iterdir())  # nothing stored, no half-built folder

    monkeypatch.setattr(export, "training_copy", place)
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": "phone"}).status_code == 202
    done = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    folder = exports.version_dir(Workspace(studio_root), done["result"]["version"])
    assert sorted(p.name for p in folder.glob("*.jpg")) == [f"IMG_{n:04d}.jpg" for n in range(24)]
    assert exports.hash_folder(folder) == done["result"]["version"]


def test_phone_photos_in_a_parquet_file_import_by_their_bytes(client, dataset_id):
    """A table whose rows hold HEIC and TIFF bytes without a name (the datasets library's Image struct with no
    path): each is named by what its bytes are."""
    from tests.parquet_files import HF_FEATURES, parquet_bytes

    tiff = io.BytesIO()
    Image.new("RGB", (80, 60), (90, 30, 160)).save(tiff, "TIFF")
    rows = [{"image": (heic_photo(orientation=None), None), "text": "tok, a phone photo"},
            {"image": (tiff.getvalue(), None), "text": "tok, a scan"}]
    job = upload(client, dataset_id, [("train-00000-of-00001.parquet", parquet_bytes(rows, features=HF_FEATURES))])
    assert job["status"] == "completed", job
    names = sorted(job["result"]["imported"])
    assert [n.rsplit(".", 1)[1] for n in names] == ["heic", "tiff"], names
    captions = {i["name"]: i["caption"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    assert sorted(captions.values()) == ["tok, a phone photo", "tok, a scan"]
