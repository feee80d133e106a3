"""Image normalisation and caption cleaning of the caption service (no model needed)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from caption_service.images import ImageRejected, decode_image, prepare
from caption_service.prompts import STYLES, PromptError, clean_caption, instruction_for

BIG = 80_000_000


def encode(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 30), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    out = decode_image(encode(image, "JPEG", exif=exif), BIG, 1_000_000)
    assert out.size == (30, 60)


def test_large_images_are_downscaled_to_the_pixel_budget():
    for fmt in ("PNG", "JPEG"):
        out = decode_image(encode(Image.new("RGB", (2000, 1000), (9, 9, 9)), fmt), BIG, 100_000)
        assert out.width * out.height <= 100_000
        assert abs(out.width / out.height - 2.0) < 0.05


def test_small_images_are_brought_to_one_patch():
    out = decode_image(encode(Image.new("RGB", (5, 3))), BIG, 100_000)
    assert min(out.size) >= 28


def test_modes_become_rgb():
    transparent = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    assert decode_image(encode(transparent), BIG, 10**6).getpixel((5, 5)) == (255, 255, 255)
    sixteen = Image.new("I;16", (40, 40), 65535)
    assert decode_image(encode(sixteen), BIG, 10**6).getpixel((5, 5)) == (255, 255, 255)
    palette = Image.new("P", (40, 40), 3)
    assert decode_image(encode(palette, "GIF"), BIG, 10**6).mode == "RGB"
    cmyk = Image.new("CMYK", (40, 40), (0, 0, 0, 0))
    assert decode_image(encode(cmyk, "JPEG"), BIG, 10**6).mode == "RGB"
    webp = Image.new("RGB", (40, 40), (10, 200, 10))
    assert decode_image(encode(webp, "WEBP", lossless=True), BIG, 10**6).getpixel((5, 5)) == (10, 200, 10)


def test_prepare_gives_a_jpeg_data_uri():
    uri = prepare(encode(Image.new("RGB", (64, 64))), BIG, 10**6)
    header, _, payload = uri.partition(",")
    assert header == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(payload))).format == "JPEG"


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"GIF89a-garbage", "not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", "not an image"),  # EPS would run Ghostscript: never opened
])
def test_rejected(data, message):
    with pytest.raises(ImageRejected, match=message):
        decode_image(data, BIG, 10**6)


def test_pixel_limit_checked_before_decoding():
    with pytest.raises(ImageRejected, match="more than the limit"):
        decode_image(encode(Image.new("L", (300, 300))), 50_000, 10**6)


def test_styles_and_prompts():
    assert set(STYLES) == {"detailed", "short", "tags", "custom"}
    style, text = instruction_for("short", "Mention the hat.")
    assert text.startswith(STYLES["short"].instruction) and text.endswith("Additional instructions: Mention the hat.")
    assert instruction_for("custom", " Only colours. ")[1] == "Only colours."
    with pytest.raises(PromptError, match="Unknown style"):
        instruction_for("haiku", None)
    with pytest.raises(PromptError, match="needs a prompt"):
        instruction_for("custom", "  ")


@pytest.mark.parametrize("style,raw,truncated,trigger,expected", [
    ("detailed", "This image shows a red   car\n on a road.<|im_end|>", False, None, "A red car on a road."),
    ("detailed", "In this image, we can see a cat. It sleeps on a so", True, None, "A cat."),
    ("short", "The photo depicts: a dog running.", False, "ohwx", "ohwx, A dog running."),
    ("custom", "This image shows a cat.", False, None, "This image shows a cat."),
    ("detailed", "a cat sitting", True, None, "a cat sitting"),  # no sentence end: keep what there is
    ("tags", "<|im_start|>cat, Cat, red hat,\n outdoor, sun", True, "ohwx", "ohwx, cat, red hat, outdoor"),
    ("short", "ohwx, a man.", False, "ohwx", "ohwx, a man."),  # trigger already there: not doubled
    ("short", "   ", False, "ohwx", "ohwx"),
])
def test_clean_caption(style, raw, truncated, trigger, expected):
    assert clean_caption(raw, STYLES[style], truncated, trigger) == expected


def test_a_phone_photo_heic_or_avif_is_read_upright_and_in_srgb():
    from tests.icc_profiles import p3_profile
    from tests.test_datasets_image_formats import P3_GREEN, heic_photo

    upright = decode_image(heic_photo(size=(96, 64), orientation=6), BIG, 10**6)
    assert upright.mode == "RGB" and upright.size == (64, 96)  # turned as the phone was held
    p3 = encode(Image.new("RGB", (64, 64), P3_GREEN), "AVIF", quality=100, icc_profile=p3_profile())
    red, green, blue = decode_image(p3, BIG, 10**6).getpixel((32, 32))
    assert red < 30 and blue < 30 and green > 190  # the Display P3 green in sRGB numbers
    with pytest.raises(ImageRejected, match=r"\(JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIC\)"):
        decode_image(b"%!PS-Adobe-3.0 EPSF-3.0\n" + b"0" * 100, BIG, 10**6)
