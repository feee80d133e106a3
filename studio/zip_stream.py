"""A ZIP streamed to the browser as it is written: no temporary file, no waiting for the whole archive.

Entries are stored, not compressed (images and .safetensors do not shrink), with ZIP64 so a file over
4 GB is fine. An entry is a file (read in 1 MB blocks) or bytes; a file that went away meanwhile is
left out.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from flask import Response, stream_with_context

Entry = tuple[str, Path | bytes]


class _Sink:
    """A write-only file for zipfile that hands written bytes to the response as they come."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def stream(entries: Iterable[Entry]):
    """The archive's bytes, block by block."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, content in entries:
            if isinstance(content, bytes):
                archive.writestr(name, content)
            else:
                try:
                    source = open(content, "rb")  # noqa: SIM115 - closed below, after the entry
                except OSError:
                    continue
                with source, archive.open(name, "w", force_zip64=True) as entry:
                    for block in iter(lambda s=source: s.read(1 << 20), b""):
                        entry.write(block)
                        yield sink.take()
            yield sink.take()
    yield sink.take()


def attachment(filename: str, plain: str | None = None) -> str:
    """Content-Disposition for a download named `filename`, any text: the name itself in UTF-8 (RFC 6266, what browsers
    use) and an ASCII one (`plain`, else made from it) for the rest. A header holds Latin-1 only, so a name like
    "猫.zip" sent as it is fails the response under gunicorn."""
    name = re.sub(r'[\x00-\x1f\x7f/\\"]+', "_", filename).strip()
    stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
    if not stem.strip(" ."):
        stem = "download"
        name = stem + dot + suffix
    if plain is None:
        plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
        plain = (re.sub(r"[^A-Za-z0-9._ ()+-]+", "_", plain).strip(" ._") or "download") + dot + suffix
    plain = re.sub(r"[^A-Za-z0-9._ ()+-]+", "_", plain).strip(" ") or "download"
    header = f'attachment; filename="{plain}"'
    return header if plain == name else f"{header}; filename*=UTF-8''{quote(name, safe='')}"


def zip_response(filename: str, entries: Iterable[Entry], plain: str | None = None) -> Response:
    """Stream `entries` as a download named `filename` (`plain`: its ASCII name, for clients without UTF-8 names)."""
    headers = {"Content-Disposition": attachment(filename, plain), "X-Accel-Buffering": "no",
               "Cache-Control": "no-cache, no-transform"}
    return Response(stream_with_context(stream(entries)), mimetype="application/zip", headers=headers)
