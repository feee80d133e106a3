"""A dataset's name as it is kept: what a person typed, made safe to show and to compare.

Composed (an "é" typed as "e" plus an accent, as a Mac keyboard can send it, is the "é" of another dataset's
name, and counts as one character), without control characters, direction overrides or byte-order marks (a
right-to-left override turns "gpj.exe" into "exe.jpg", and the words shown after the name backwards), spaces
collapsed; refused when nothing of it can be seen. Every way a dataset gets a name goes through here: the index
page's create and rename, Express, scripts.
"""

from __future__ import annotations

import unicodedata

NAME_MAX = 80
# Characters that change how the text around a name is shown, or show nothing (a byte-order mark)
_HIDDEN = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF])


def validate_name(name) -> str:
    """The name to keep; ValueError with a sentence when there is none to keep."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("Give the dataset a name.")
    name = unicodedata.normalize("NFC", name).translate(_HIDDEN)
    name = "".join(" " if unicodedata.category(char) == "Cc" else char for char in name)
    if not any(unicodedata.category(char)[0] not in "CZ" for char in name):
        raise ValueError("The name shows nothing (only invisible characters): give it letters, digits or emoji.")
    name = " ".join(name.split())
    if len(name) > NAME_MAX:
        raise ValueError(f"The name is too long ({NAME_MAX} characters at most).")
    return name
