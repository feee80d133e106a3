"""An edit loses nothing the picture had: a lossless WebP stays lossless, a JPEG keeps its quality (quantization
tables), its chroma subsampling, its colour profile and its EXIF (less the orientation the edit applied), and an
animation (APNG, animated WebP) or a TIFF's pages keep every frame, their durations and loop count. What cannot be
edited whole (an animation over MAX_IMAGE_PIXELS in all, pages of several sizes to crop) is refused, not cut."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

import app as datasets_app
from app import image_edits
from tests import test_datasets_support as support
from tests.test_datasets_support import upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

ROTATE_CLOCKWISE = Image.Transpose.ROTATE_270
MAKE, ORIENTATION, EXIF_IFD, EXIF_WIDTH, EXIF_HEIGHT = 0x010F, 0x0112, 0x8769, 0xA002, 0xA003


def _edit(client, dataset_id, name, **body):
    return client.post(f"/api/datasets/{dataset_id}/images/{name}/edit", json=body)


def _noise(size=(96, 64), mode="RGB", seed=0) -> Image.Image:
    """Noise, which any lossy encoding changes."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], len(mode)), dtype=np.uint8), mode)


def _saved(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _frames(data: bytes) -> tuple[list[np.ndarray], list, dict]:
    """(each frame's RGBA pixels, each frame's duration, the file's info) of an animation."""
    pixels, durations = [], []
    with Image.open(io.BytesIO(data)) as image:
        info = dict(image.info)
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            image.load()
            pixels.append(np.asarray(image.convert("RGBA")))
            durations.append(image.info.get("duration"))
    return pixels, durations, info


def _animation_frames(count=3, size=(96, 64)) -> list[Image.Image]:
    """Frames that differ everywhere, with a transparent corner, so a frame dropped or drawn wrong shows."""
    frames = []
    for index in range(count):
        frame = _noise(size, "RGBA", seed=index)
        frame.paste((0, 0, 0, 0), (0, 0, 16, 16))
        frame.paste((255, 0, 0, 255), (size[0] - 16, 0, size[0], 16 + 8 * index))
        frames.append(frame)
    return frames


# 1. A lossless WebP stays lossless.

def test_a_lossless_webp_is_saved_lossless_again(client, dataset_id, studio_root):
    source = _noise()
    upload(client, dataset_id, [("n.webp", _saved(source, "WEBP", lossless=True))])
    path = studio_root / "datasets" / dataset_id / "n.webp"
    response = _edit(client, dataset_id, "n.webp", op="rotate", degrees=90)
    assert response.status_code == 200, response.get_json()
    data = path.read_bytes()
    assert data[12:16] == b"VP8L" and image_edits.webp_is_lossless(path)
    with Image.open(path) as edited:
        assert np.array_equal(np.asarray(edited.convert("RGB")), np.asarray(source.transpose(ROTATE_CLOCKWISE)))


def test_a_lossy_webp_stays_lossy(client, dataset_id, studio_root):
    upload(client, dataset_id, [("n.webp", _saved(_noise(), "WEBP", quality=80))])
    assert _edit(client, dataset_id, "n.webp", op="flip", axis="vertical").status_code == 200
    assert not image_edits.webp_is_lossless(studio_root / "datasets" / dataset_id / "n.webp")


@pytest.mark.parametrize("save, lossless", [
    ({"lossless": True}, True),  # RIFF....WEBPVP8L
    ({"quality": 80}, False),  # RIFF....WEBPVP8
    ({"lossless": True, "icc_profile": b"x" * 200}, True),  # VP8X, ICCP, VP8L
    ({"quality": 80, "exif": Image.Exif().tobytes()}, False),  # VP8X ... VP8
])
def test_webp_losslessness_is_read_from_its_chunks(tmp_path, save, lossless):
    path = tmp_path / "a.webp"
    path.write_bytes(_saved(_noise(mode="RGBA"), "WEBP", **save))
    assert image_edits.webp_is_lossless(path) is lossless


@pytest.mark.parametrize("lossless", [True, False])
def test_an_animated_webps_losslessness_is_read_from_its_frames(tmp_path, lossless):
    frames = _animation_frames()
    path = tmp_path / "a.webp"
    path.write_bytes(_saved(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100,
                            **({"lossless": True} if lossless else {"quality": 80})))
    assert path.read_bytes()[12:16] == b"VP8X"
    assert image_edits.webp_is_lossless(path) is lossless


def test_not_a_webp_is_not_lossless(tmp_path):
    for content in (b"", b"RIFF\x04\x00\x00\x00WEBP", _saved(_noise(), "PNG")):
        path = tmp_path / "a.webp"
        path.write_bytes(content)
        assert image_edits.webp_is_lossless(path) is False
    assert image_edits.webp_is_lossless(tmp_path / "missing.webp") is False


# 2. A JPEG keeps its quality, subsampling, colour profile and EXIF.

def _camera_jpeg(size=(240, 160), orientation=None, **save) -> bytes:
    exif = Image.Exif()
    exif[MAKE] = "Studio Camera"
    exif.get_ifd(EXIF_IFD)[EXIF_WIDTH] = size[0]
    exif.get_ifd(EXIF_IFD)[EXIF_HEIGHT] = size[1]
    if orientation:
        exif[ORIENTATION] = orientation
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _saved(_noise(size), "JPEG", exif=exif, icc_profile=icc, **save)


@pytest.mark.parametrize("quality, subsampling", [(70, 0), (85, 1), (95, 2)])
def test_a_jpeg_keeps_its_quality_subsampling_profile_and_exif(client, dataset_id, studio_root, quality, subsampling):
    came = _camera_jpeg(quality=quality, subsampling=subsampling)
    upload(client, dataset_id, [("p.jpg", came)])
    response = _edit(client, dataset_id, "p.jpg", op="crop", box=[8, 8, 200, 120])
    assert response.status_code == 200, response.get_json()
    with Image.open(io.BytesIO(came)) as source, Image.open(studio_root / "datasets" / dataset_id / "p.jpg") as saved:
        assert saved.size == (200, 120)
        assert JpegImagePlugin.get_sampling(saved) == subsampling
        assert saved.quantization == source.quantization  # the same quality, not a fixed one
        assert saved.info.get("icc_profile") == source.info["icc_profile"]
        exif = saved.getexif()
        assert exif.get(MAKE) == "Studio Camera"
        sizes = exif.get_ifd(EXIF_IFD)
        assert (sizes[EXIF_WIDTH], sizes[EXIF_HEIGHT]) == (200, 120)  # the edited size


def test_a_turned_jpeg_keeps_its_exif_without_the_turn_it_had(client, dataset_id, studio_root):
    upload(client, dataset_id, [("t.jpg", _camera_jpeg(orientation=6, quality=80, subsampling=0))])
    row = _edit(client, dataset_id, "t.jpg", op="flip", axis="horizontal").get_json()
    assert (row["width"], row["height"]) == (160, 240)  # shown turned, and saved so
    with Image.open(studio_root / "datasets" / dataset_id / "t.jpg") as saved:
        exif = saved.getexif()
        assert saved.size == (160, 240) and exif.get(ORIENTATION) is None and exif.get(MAKE) == "Studio Camera"
        assert JpegImagePlugin.get_sampling(saved) == 0
        sizes = exif.get_ifd(EXIF_IFD)
        assert (sizes[EXIF_WIDTH], sizes[EXIF_HEIGHT]) == (160, 240)


def test_a_second_edit_takes_the_settings_of_the_original(client, dataset_id, studio_root):
    came = _camera_jpeg(quality=60, subsampling=0)
    upload(client, dataset_id, [("p.jpg", came)])
    _edit(client, dataset_id, "p.jpg", op="rotate", degrees=90)
    _edit(client, dataset_id, "p.jpg", op="rotate", degrees=-90)
    with Image.open(io.BytesIO(came)) as source, Image.open(studio_root / "datasets" / dataset_id / "p.jpg") as saved:
        assert saved.quantization == source.quantization and JpegImagePlugin.get_sampling(saved) == 0


# 3. An animation keeps every frame.

def test_an_apng_keeps_every_frame_its_durations_and_loop(client, dataset_id, studio_root):
    frames = _animation_frames()
    came = _saved(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=2,
                  disposal=[0, 1, 2], blend=[0, 1, 0])
    source, _, _ = _frames(came)  # each frame as it shows
    upload(client, dataset_id, [("a.png", came)])
    path = studio_root / "datasets" / dataset_id / "a.png"
    assert _edit(client, dataset_id, "a.png", op="rotate", degrees=90).status_code == 200
    response = _edit(client, dataset_id, "a.png", op="crop", box=[0, 8, 64, 80])
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["width"], response.get_json()["height"]) == (64, 80)
    pixels, durations, info = _frames(path.read_bytes())
    assert len(pixels) == 3 and durations == [100, 200, 300] and info["loop"] == 2
    for shown, frame in zip(pixels, source, strict=True):
        expected = np.asarray(Image.fromarray(frame).transpose(ROTATE_CLOCKWISE).crop((0, 8, 64, 88)))
        assert np.array_equal(shown, expected)
    assert _edit(client, dataset_id, "a.png", op="revert").status_code == 200
    assert path.read_bytes() == came


def test_an_apng_with_a_default_image_keeps_it_out_of_the_animation(client, dataset_id, studio_root):
    """The first frame is the picture a viewer without APNG shows, not part of the animation: so it stays."""
    frames = _animation_frames()
    came = _saved(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=[100, 200], default_image=True)
    source, source_durations, _ = _frames(came)
    upload(client, dataset_id, [("d.png", came)])
    path = studio_root / "datasets" / dataset_id / "d.png"
    assert _edit(client, dataset_id, "d.png", op="flip", axis="vertical").status_code == 200
    pixels, durations, info = _frames(path.read_bytes())
    assert info.get("default_image") is True and len(pixels) == 3 and durations == source_durations
    for shown, frame in zip(pixels, source, strict=True):
        assert np.array_equal(shown, np.asarray(Image.fromarray(frame).transpose(Image.Transpose.FLIP_TOP_BOTTOM)))


@pytest.mark.parametrize("lossless", [True, False])
def test_an_animated_webp_keeps_every_frame_its_durations_and_loop(client, dataset_id, studio_root, lossless):
    frames = _animation_frames()
    came = _saved(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=[80, 160, 240], loop=5,
                  **({"lossless": True} if lossless else {"quality": 90}))
    source, _, _ = _frames(came)
    upload(client, dataset_id, [("a.webp", came)])
    path = studio_root / "datasets" / dataset_id / "a.webp"
    response = _edit(client, dataset_id, "a.webp", op="flip", axis="horizontal")
    assert response.status_code == 200, response.get_json()
    pixels, durations, info = _frames(path.read_bytes())
    assert len(pixels) == 3 and durations == [80, 160, 240] and info["loop"] == 5
    assert image_edits.webp_is_lossless(path) is lossless
    for shown, frame in zip(pixels, source, strict=True):
        expected = np.asarray(Image.fromarray(frame).transpose(Image.Transpose.FLIP_LEFT_RIGHT), dtype=np.int16)
        if lossless:
            assert np.array_equal(shown, expected)
        else:  # one more lossy generation at quality 95; a wrong or dropped frame differs by far more
            assert np.abs(shown.astype(np.int16) - expected)[..., :3].mean() < 12


def test_a_tiffs_pages_are_all_turned(client, dataset_id, studio_root):
    pages = [_noise((120, 80), seed=1), _noise((120, 80), seed=2)]
    upload(client, dataset_id, [("s.tif", _saved(pages[0], "TIFF", save_all=True, append_images=pages[1:]))])
    assert _edit(client, dataset_id, "s.tif", op="rotate", degrees=180).status_code == 200
    pixels, _, _ = _frames((studio_root / "datasets" / dataset_id / "s.tif").read_bytes())
    assert len(pixels) == 2
    for shown, page in zip(pixels, pages, strict=True):
        assert np.array_equal(shown[..., :3], np.asarray(page.transpose(Image.Transpose.ROTATE_180)))


def _unchanged(client, dataset_id, studio_root, name, came):
    assert (studio_root / "datasets" / dataset_id / name).read_bytes() == came
    assert not (studio_root / "datasets" / dataset_id / ".originals").exists()
    row = next(i for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"] if i["name"] == name)
    assert row["edits"] == []


def test_pages_of_several_sizes_are_not_cropped_as_one(client, dataset_id, studio_root):
    pages = [_noise((120, 80), seed=1), _noise((60, 40), seed=2)]  # a picture and its preview, say
    came = _saved(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    upload(client, dataset_id, [("s.tif", came)])
    response = _edit(client, dataset_id, "s.tif", op="crop", box=[0, 0, 64, 64])
    assert response.status_code == 422
    assert "not all the same size, so one crop cannot be applied to every page" in response.get_json()["error"]
    _unchanged(client, dataset_id, studio_root, "s.tif", came)


def test_an_animation_over_the_pixel_limit_in_all_is_refused(make_settings, studio_root):
    client = datasets_app.create_app(make_settings(MAX_IMAGE_PIXELS=50_000)).test_client()
    dataset_id = client.post("/api/datasets", json={"name": "Long loop"}).get_json()["id"]
    frames = _animation_frames(count=10, size=(100, 100))  # 10,000 pixels a frame, 100,000 in all
    came = _saved(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50)
    job = upload(client, dataset_id, [("long.png", came)])
    assert job["result"]["imported"] == ["long.png"], job["result"]  # one frame is within the limit
    response = _edit(client, dataset_id, "long.png", op="rotate", degrees=90)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "10 frames of 100×100" in error and "100,000 pixels" in error and "50,000 (MAX_IMAGE_PIXELS)" in error
    _unchanged(client, dataset_id, studio_root, "long.png", came)


def test_frames_this_server_cannot_write_again_are_refused_not_dropped(client, dataset_id, studio_root, monkeypatch):
    frames = _animation_frames()
    came = _saved(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50)
    upload(client, dataset_id, [("a.png", came)])
    Image.init()
    monkeypatch.delitem(Image.SAVE_ALL, "PNG")  # stands for a format whose writer takes one frame
    response = _edit(client, dataset_id, "a.png", op="rotate", degrees=90)
    assert response.status_code == 422 and "3 frames" in response.get_json()["error"]
    assert "keep only the first" in response.get_json()["error"]
    _unchanged(client, dataset_id, studio_root, "a.png", came)
