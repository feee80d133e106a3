"""A dataset's name as it is kept: what a person typed, made safe to show and to compare.

Composed (an "é" typed as "e" plus an accent, as a Mac keyboard can send it, is the "é" of another dataset's
name, and counts as one character), without control characters, direction overrides or byte-order marks (a
right-to-left override turns "gpj.exe" into "exe.jpg", and the words shown after the name backwards), spaces
collapsed; refused when nothing of it can be seen. Every way a dataset gets a name goes through here: the index
page's create and rename, Express, scripts.
"""

from __future__ import annotations

from studio.text import shown_name

NAME_MAX = 80


def validate_name(name) -> str:
    """The name to keep; ValueError with a sentence when there is none to keep."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("Give the dataset a name.")
    name = shown_name(name)
    if not name:
        raise ValueError("The name shows nothing (only invisible characters): give it letters, digits or emoji.")
    if len(name) > NAME_MAX:
        raise ValueError(f"The name is too long ({NAME_MAX} characters at most).")
    return name
