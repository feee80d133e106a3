"""The studio's favicon, drawn once per process (no binary file in the repository).

Every service serves it at /favicon.ico without a password, like /health: browsers fetch it without
credentials (also on the login page), and it tells nothing about the studio's content.
"""

from __future__ import annotations

import functools
import io

from flask import Response
from PIL import Image, ImageDraw

ACCENT = (108, 140, 255, 255)  # --accent in studio.css
INK = (255, 255, 255, 255)
SIZE = 64


def _draw() -> Image.Image:
    """A rounded accent square with a white "Z" drawn from polygons (no font needed)."""
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, SIZE - 1, SIZE - 1), radius=14, fill=ACCENT)
    left, right, top, bottom, bar = 16, 48, 14, 50, 8
    draw.rectangle((left, top, right, top + bar), fill=INK)
    draw.rectangle((left, bottom - bar, right, bottom), fill=INK)
    draw.polygon([(right - 11, top + bar), (right, top + bar), (left + 11, bottom - bar), (left, bottom - bar)],
                 fill=INK)
    return image


@functools.cache
def favicon_bytes() -> bytes:
    buffer = io.BytesIO()
    _draw().save(buffer, "ICO", sizes=[(16, 16), (32, 32), (48, 48)])
    return buffer.getvalue()


def favicon() -> Response:
    response = Response(favicon_bytes(), mimetype="image/vnd.microsoft.icon")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
