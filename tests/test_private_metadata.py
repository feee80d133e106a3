"""A photo published to Hugging Face leaves without its location, camera and editing metadata, and with its
picture untouched: the same decoded pixels, the same orientation, the colour profile kept. JPEG (baseline,
progressive, restart markers, a phone's appended pictures), PNG and WebP (lossy, lossless, transparent); a file
with nothing to remove is uploaded as it is; one whose layout is broken is saved again without any metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from app import private_metadata
from app.private_metadata import Unreadable, clean_copy
from studio.job_reporter import QuietReporter

GPS = 0x8825
SECRETS = (b"Apple", b"iPhone 15 Pro", b"SN-31337", b"48 51", b"home-address", b"Lightroom")


def _photo(mode: str = "RGB", size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8), mode)


def _exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro"
    exif[0xA431] = "SN-31337"  # the body's serial number
    exif[GPS] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    return exif


XMP = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="48 51" xmp:CreatorTool="Lightroom"/></x:xmpmeta>'


def _file(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _check(original: bytes, cleaned: bytes, orientation: int | None) -> None:
    for secret in SECRETS:
        assert secret not in cleaned, secret
    assert np.array_equal(_pixels(cleaned), _pixels(original))  # the picture itself, not encoded again
    with Image.open(io.BytesIO(cleaned)) as image:
        exif = image.getexif()
        assert dict(exif) == ({0x0112: orientation} if orientation else {}) and not exif.get_ifd(GPS)


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"restart_marker_blocks": 1},
                                     {"subsampling": 0, "quality": 98}], ids=["baseline", "progressive",
                                                                               "restart-markers", "444"])
def test_a_phone_jpeg_loses_its_location_and_camera_but_keeps_its_picture(tmp_path, options):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    _photo().save(buffer, "JPEG", exif=_exif(), xmp=XMP, comment=b"home-address", icc_profile=profile, **options)
    # what a phone appends after the picture: a second image (depth or gain map) with its own EXIF
    second = io.BytesIO()
    _photo(size=(16, 16)).save(second, "JPEG", exif=_exif())
    original = buffer.getvalue() + second.getvalue()
    cleaned = clean_copy(_file(tmp_path, "a.jpg", original))
    _check(original, cleaned, orientation=6)
    assert cleaned.endswith(b"\xff\xd9") and cleaned.count(b"\xff\xd8") == 1  # nothing after the picture
    with Image.open(io.BytesIO(cleaned)) as image:
        assert image.info.get("icc_profile") == profile


def test_png_and_webp_lose_their_metadata_chunks(tmp_path):
    rgba = _photo("RGBA")
    text = PngImagePlugin.PngInfo()
    text.add_text("Location", "home-address")
    text.add_itxt("XML:com.adobe.xmp", XMP.decode())
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG", exif=_exif(3), pnginfo=text)
    _check(buffer.getvalue(), clean_copy(_file(tmp_path, "a.png", buffer.getvalue())), orientation=3)
    for picture in (rgba, rgba.convert("RGB")):
        for lossless in (True, False):
            buffer = io.BytesIO()
            picture.save(buffer, "WEBP", exif=_exif(8), xmp=XMP, lossless=lossless)
            cleaned = clean_copy(_file(tmp_path, "a.webp", buffer.getvalue()))
            _check(buffer.getvalue(), cleaned, orientation=8)
            assert cleaned[4:8] == (len(cleaned) - 8).to_bytes(4, "little")  # the RIFF size follows


def test_an_upright_photo_keeps_no_exif_and_a_plain_file_is_left_alone(tmp_path):
    buffer = io.BytesIO()
    _photo().save(buffer, "JPEG", exif=_exif(orientation=1))
    _check(buffer.getvalue(), clean_copy(_file(tmp_path, "a.jpg", buffer.getvalue())), orientation=None)
    for fmt, name in (("JPEG", "b.jpg"), ("PNG", "b.png"), ("WEBP", "b.webp")):
        buffer = io.BytesIO()
        _photo().save(buffer, fmt)
        assert clean_copy(_file(tmp_path, name, buffer.getvalue())) is None, fmt
    assert clean_copy(_file(tmp_path, "c.txt", b"a caption")) is None


def test_a_jpeg_whose_layout_is_broken_is_saved_again_without_any_metadata(tmp_path):
    buffer = io.BytesIO()
    _photo().save(buffer, "JPEG", exif=_exif())
    data = buffer.getvalue()
    first = 4 + int.from_bytes(data[4:6], "big")  # the end of the first segment
    broken = data[:first] + b"junk" + data[first:]  # Pillow reads past it; the segments do not follow each other
    path = _file(tmp_path, "a.jpg", broken)
    with pytest.raises(Unreadable):
        clean_copy(path)
    with pytest.raises(Unreadable):
        clean_copy(_file(tmp_path, "cut.jpg", data[: len(data) // 2]))
    caption = _file(tmp_path, "a.txt", b"a caption")
    files, cleaned = private_metadata.removed(QuietReporter(), [("train/a.jpg", path), ("train/a.txt", caption)],
                                              tmp_path / "work")
    assert cleaned == 1 and files[1] == ("train/a.txt", caption)
    again = files[0][1].read_bytes()
    assert all(secret not in again for secret in SECRETS)
    with Image.open(io.BytesIO(again)) as image:
        assert image.size == (64, 96) and not dict(image.getexif())  # turned upright, then saved plain


def test_damaged_files_are_cleaned_or_unreadable_never_a_crash(tmp_path):
    """Bytes changed, cut or inserted at random in real JPEG, PNG and WebP files with metadata."""
    import random

    rng = random.Random(1)
    originals = []
    for fmt, options in (("JPEG", {"exif": _exif(), "xmp": XMP}), ("JPEG", {"progressive": True, "exif": _exif()}),
                         ("PNG", {"exif": _exif()}), ("WEBP", {"exif": _exif(), "xmp": XMP})):
        buffer = io.BytesIO()
        _photo().save(buffer, fmt, **options)
        originals.append(buffer.getvalue())
    path = tmp_path / "photo"
    for _ in range(3000):
        data = bytearray(rng.choice(originals))
        roll = rng.random()
        if roll < 0.4:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif roll < 0.7:
            data = data[:rng.randrange(len(data))]
        else:
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        path.write_bytes(bytes(data))
        try:
            clean_copy(path)
        except Unreadable:
            pass
