"""Photos leave the pod for a public place (a dataset published to Hugging Face) without what they tell about
the person who took them: the location (GPS), the camera and its serial number, the date, the editing software,
embedded thumbnails and the extra pictures a phone appends (depth maps, gain maps).

The picture itself is untouched: the compressed image data is copied byte for byte, never decoded and encoded
again. Kept: what decoding and showing it needs (JFIF, the colour profile, Adobe's colour transform, PNG's colour
and transparency chunks, WebP's alpha and animation) and the EXIF orientation, rewritten alone, so a photo taken
upright still shows upright.

    clean_copy(path) -> bytes | None   the file without that metadata; None when it holds none (upload it as is)
    removed(job, files, work)          the files to publish, those with such metadata replaced by clean copies
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

from PIL import Image

from app import imaging
from studio.atomic import atomic_write_bytes
from studio.job_reporter import JobReporter
from studio.pixels import ORIENTATION, upright

JPEG_KEEP_APP = {0xE0: (b"JFIF\0", b"JFXX\0"), 0xE2: (b"ICC_PROFILE\0",), 0xEE: (b"Adobe",)}
PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs",
            b"bKGD", b"cICP", b"mDCV", b"cLLI", b"mDCv", b"cLLi", b"acTL", b"fcTL", b"fdAT"}
WEBP_DROP = {b"EXIF", b"XMP "}
WEBP_EXIF_FLAG, WEBP_XMP_FLAG = 0x08, 0x04


class Unreadable(ValueError):
    """The file is not laid out as its type says (a decoder may still read it: see reencoded)."""


def removed(job: JobReporter, files: list[tuple[str, Path]], work: Path) -> tuple[list[tuple[str, Path]], int]:
    """([(path in the repo, file)] with each image that holds such metadata replaced by its clean copy in `work`,
    how many were). An image whose layout this module cannot follow is decoded and saved again without any
    metadata (upright), rather than published with it."""
    out, cleaned = [], 0
    images = sum(1 for _, file in files if imaging.is_image_name(file.name))
    seen = 0
    for target, file in files:
        if not imaging.is_image_name(file.name):
            out.append((target, file))
            continue
        job.check_stop()
        seen += 1
        if seen % 50 == 1:
            job.update(phase="uploading", message=f"Removing location and camera data ({seen} of {images})")
        try:
            data = clean_copy(file)
        except Unreadable:
            data = reencoded(file)
        if data is None:
            out.append((target, file))
            continue
        copy = work / file.name
        atomic_write_bytes(copy, data)
        out.append((target, copy))
        cleaned += 1
    return out, cleaned


def reencoded(path: Path) -> bytes:
    """The picture decoded and saved again in its format with no metadata at all, turned upright first (a JPEG
    at quality 95)."""
    with Image.open(path) as image:
        fmt = image.format
        picture = upright(image)
        buffer = io.BytesIO()
        picture.save(buffer, fmt, **({"quality": 95} if fmt in {"JPEG", "WEBP"} else {}))
    return buffer.getvalue()


def clean_copy(path: Path) -> bytes | None:
    """The file's bytes without location, camera and editing metadata (JPEG, PNG, WebP); None when there was
    nothing to remove or the type is another. Raises Unreadable for a file whose structure is broken."""
    data = path.read_bytes()
    if data.startswith(b"\xff\xd8"):
        cleaned = _jpeg(data)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        cleaned = _png(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        cleaned = _webp(data)
    else:
        return None
    return None if cleaned == data else cleaned


def orientation_exif(exif_payload: bytes) -> bytes | None:
    """A TIFF-structured EXIF block holding only the orientation of `exif_payload` (with or without the
    "Exif\\0\\0" prefix); None when it has none or the upright one (1)."""
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():  # Pillow warns of each damaged tag it skips
            warnings.simplefilter("ignore")
            exif.load(exif_payload)
            value = exif.get(ORIENTATION)
    except Exception:  # a damaged EXIF block tells nothing worth keeping
        return None
    if not isinstance(value, int) or not 2 <= value <= 8:
        return None
    kept = Image.Exif()
    kept[ORIENTATION] = value
    return kept.tobytes()[6:]  # without the "Exif\0\0" that Pillow puts first


def _jpeg(data: bytes) -> bytes:
    out = bytearray(b"\xff\xd8")
    pos = 2
    while True:
        marker, pos = _marker(data, pos)
        if marker == 0xD9:  # an image without a scan: nothing after it is the picture
            out += b"\xff\xd9"
            return bytes(out)
        length = _length(data, pos)
        segment = data[pos - 2:pos + length]
        payload = data[pos + 2:pos + length]
        if marker == 0xDA:  # start of the scan: the picture itself, to its end, then nothing after it
            return bytes(out) + _scans(data, pos - 2)
        if marker == 0xE1 and payload.startswith(b"Exif\0\0"):
            kept = orientation_exif(payload)
            if kept:
                body = b"Exif\0\0" + kept
                out += b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
        elif marker == 0xFE or (0xE0 <= marker <= 0xEF and not payload.startswith(JPEG_KEEP_APP.get(marker, ()))):
            pass  # comments and application data: XMP, IPTC, maker notes, the phone's extra pictures (MPF)
        else:
            out += segment
        pos += length


def _marker(data: bytes, pos: int) -> tuple[int, int]:
    """(the marker at `pos`, where its segment's length starts); fill bytes before it are skipped."""
    if pos >= len(data) or data[pos] != 0xFF:
        raise Unreadable("a JPEG segment does not start where the previous one ends")
    while pos < len(data) and data[pos] == 0xFF:
        pos += 1
    if pos >= len(data):
        raise Unreadable("the JPEG ends inside a marker")
    return data[pos], pos + 1


def _length(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise Unreadable("the JPEG ends inside a segment")
    length = struct.unpack(">H", data[pos:pos + 2])[0]
    if length < 2 or pos + length > len(data):
        raise Unreadable("a JPEG segment is longer than the file")
    return length


def _scans(data: bytes, start: int) -> bytes:
    """The bytes from the first scan's header to the image's end marker: the entropy-coded data with the
    tables and headers of a progressive JPEG's later scans (each segment copied by its length), and nothing
    after the end marker (a phone's appended pictures and their own EXIF)."""
    pos = start
    while True:
        marker, after = _marker(data, pos)
        if marker == 0xD9:
            return data[start:after]
        length = _length(data, after)
        pos = after + length
        if marker != 0xDA:
            continue
        while True:  # entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte) or a restart marker
            found = data.find(b"\xff", pos)
            if found < 0 or found + 1 >= len(data):
                raise Unreadable("the JPEG ends inside its picture data")
            following = data[found + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                pos = found + 1 if following == 0xFF else found + 2
                continue
            pos = found
            break


def _png(data: bytes) -> bytes:
    out = bytearray(data[:8])
    pos = 8
    while pos < len(data):
        if pos + 8 > len(data):
            raise Unreadable("the PNG ends inside a chunk header")
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise Unreadable("a PNG chunk is longer than the file")
        if kind in PNG_KEEP:
            out += data[pos:end]
        elif kind == b"eXIf" and (kept := orientation_exif(data[pos + 8:pos + 8 + length])):
            out += struct.pack(">I", len(kept)) + b"eXIf" + kept + struct.pack(">I", zlib.crc32(b"eXIf" + kept))
        pos = end
        if kind == b"IEND":
            break
    return bytes(out)


def _webp(data: bytes) -> bytes:
    chunks = bytearray()
    pos, flags_at = 12, None
    size = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= size:
        kind = data[pos:pos + 4]
        length = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        end = pos + 8 + length + (length & 1)  # chunks are padded to an even size
        if pos + 8 + length > size:
            raise Unreadable("a WebP chunk is longer than the file")
        if kind == b"VP8X":
            flags_at = len(chunks) + 8
        if kind == b"EXIF" and (kept := orientation_exif(data[pos + 8:pos + 8 + length])):
            chunks += b"EXIF" + struct.pack("<I", len(kept)) + kept + (b"\0" if len(kept) & 1 else b"")
        elif kind not in WEBP_DROP:
            chunks += data[pos:end]
        pos = end
    if flags_at is not None:  # the extended header says which metadata chunks follow
        has_exif = b"EXIF" in _kinds(chunks)
        chunks[flags_at] = (chunks[flags_at] & ~(WEBP_EXIF_FLAG | WEBP_XMP_FLAG)) | (WEBP_EXIF_FLAG if has_exif else 0)
    return b"RIFF" + struct.pack("<I", len(chunks) + 4) + b"WEBP" + bytes(chunks)


def _kinds(chunks: bytes) -> list[bytes]:
    kinds, pos = [], 0
    while pos + 8 <= len(chunks):
        length = struct.unpack("<I", chunks[pos + 4:pos + 8])[0]
        kinds.append(bytes(chunks[pos:pos + 4]))
        pos += 8 + length + (length & 1)
    return kinds
