"""Small helpers for the sentences the studio shows."""

from __future__ import annotations

import math
import re
import unicodedata
from urllib.parse import urlsplit

# The text encoder reads a caption's first 512 tokens (ZImagePipeline's max_sequence_length, the chat template's
# dozen included) and drops the rest; people see an estimate, the same as the gallery's counter shows.
CAPTION_TOKENS = 512
_PIECES = re.compile(r"\w+|[^\w\s]", re.ASCII)
# Characters that change how the text around a name is shown (a right-to-left override turns "gpj.exe" into
# "exe.jpg", and the words after it backwards) or show nothing (a byte-order mark)
_HIDDEN = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF])


def plural(count: int, one: str, many: str | None = None) -> str:
    """"1 image", "3 images" (`many` for irregular words: plural(n, "match", "matches"))."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def name_list(names: list[str], shown: int = 3) -> str:
    """"a.png, b.png, c.png and 2 more": a short list for one sentence."""
    head = ", ".join(names[:shown])
    rest = len(names) - shown
    return f"{head} and {rest} more" if rest > 0 else head


def estimated_tokens(text: str) -> int:
    """About how many tokens the text encoder makes of `text` (words and signs x 1.25, as the gallery counts)."""
    return math.ceil(len(_PIECES.findall(text)) * 1.25)


def over_caption_limit(text: str) -> int | None:
    """The estimate for a caption the text encoder would cut short (above CAPTION_TOKENS less the template's
    dozen), else None."""
    tokens = estimated_tokens(text)
    return tokens if tokens > CAPTION_TOKENS - 12 else None


def address_only(url: str) -> str:
    """What may be shown or logged of a webhook's address: its scheme and host ("https://discord.com/…"); the path
    and query hold its token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:  # not a port (a job stored before its webhook's port was checked): the host says enough
        port = None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/…"


def shown_name(name: str) -> str:
    """A name as people type it, kept as it shows: composed (an "é" typed as "e" plus an accent is one letter, and
    the "é" of another name), without direction overrides or byte-order marks, control characters as spaces, spaces
    collapsed; "" when nothing of it can be seen (only invisible characters)."""
    name = unicodedata.normalize("NFC", name).translate(_HIDDEN)
    name = " ".join("".join(" " if unicodedata.category(char) == "Cc" else char for char in name).split())
    return name if any(unicodedata.category(char)[0] not in "CZ" for char in name) else ""
