"""An edit keeps what a picture says about itself beyond its pixels: its XMP packet (credits, rights, keywords) in a
JPEG, WebP, TIFF or PNG, without an orientation the edit has applied (a viewer would turn it again), and a PNG's
text chunks (the prompt and settings a generator wrote there)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from tests import test_datasets_support as support
from tests.test_datasets_support import upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

XMP = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
       'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
       'tiff:Orientation="{orientation}"><dc:creator><rdf:Seq><rdf:li>Anna Ström</rdf:li></rdf:Seq></dc:creator>'
       '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
ORIENTATION = 0x0112


def _edit(client, dataset_id, name, **body):
    return client.post(f"/api/datasets/{dataset_id}/images/{name}/edit", json=body)


def _picture(fmt: str, orientation: int = 1, **save) -> bytes:
    image = Image.new("RGB", (192, 128), (200, 40, 40))
    image.paste((40, 40, 200), (0, 0, 24, 24))
    xmp = XMP.format(orientation=orientation).encode("utf-8")
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", "a red cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234")
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        info.add_itxt("Comment", "Ström’s")  # beyond Latin-1
        save["pnginfo"] = info
    elif fmt == "TIFF":
        save["tiffinfo"] = {700: xmp}
    else:
        save["xmp"] = xmp
    if orientation != 1:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        save["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _xmp_of(path) -> str:
    with Image.open(path) as image:
        value = image.info.get("xmp") or b""
    return value.decode("utf-8") if isinstance(value, bytes) else value


@pytest.mark.parametrize("name, fmt", [("a.jpg", "JPEG"), ("a.webp", "WEBP"), ("a.tif", "TIFF"), ("a.png", "PNG")])
def test_the_xmp_packet_stays_with_an_edited_picture(client, dataset_id, studio_root, name, fmt):
    upload(client, dataset_id, [(name, _picture(fmt))])
    response = _edit(client, dataset_id, name, op="crop", box=[0, 0, 128, 96])
    assert response.status_code == 200, response.get_json()
    xmp = _xmp_of(studio_root / "datasets" / dataset_id / name)
    assert "<rdf:li>Anna Ström</rdf:li>" in xmp


def test_an_applied_orientation_leaves_the_xmp_too(client, dataset_id, studio_root):
    upload(client, dataset_id, [("turned.jpg", _picture("JPEG", orientation=6))])  # shown 128×192
    response = _edit(client, dataset_id, "turned.jpg", op="rotate", degrees=90)
    assert response.status_code == 200, response.get_json()
    path = studio_root / "datasets" / dataset_id / "turned.jpg"
    with Image.open(path) as edited:
        assert edited.size == (192, 128) and edited.getexif().get(ORIENTATION, 1) == 1
    xmp = _xmp_of(path)
    assert "Anna Ström" in xmp and 'tiff:Orientation="6"' not in xmp  # no viewer turns it a second time


def test_a_pngs_text_chunks_stay(client, dataset_id, studio_root):
    upload(client, dataset_id, [("gen.png", _picture("PNG"))])
    assert _edit(client, dataset_id, "gen.png", op="flip", axis="horizontal").status_code == 200
    with Image.open(studio_root / "datasets" / dataset_id / "gen.png") as edited:
        text = dict(edited.text)
    assert text["parameters"].startswith("a red cat\nSteps: 20")
    assert text["Comment"] == "Ström’s"
    assert "Anna Ström" in text["XML:com.adobe.xmp"]
