"""Find & replace patterns for captions, with a bound on the time they take.

A regular expression such as `(a|a)+$` backtracks for minutes on a caption of a few dozen letters, and the
dialog previews while the user types: Python's `re` cannot be stopped, so the `regex` package (which can, and
releases the GIL while it matches) runs every pattern with a timeout, per caption and per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import regex

CAPTION_SECONDS = 0.25  # what one caption may take
REQUEST_SECONDS = 2.0  # what all the captions of one request may take together


class TooSlow(Exception):
    """The pattern ran past its time; the message says where, in one sentence."""


@dataclass
class Change:
    name: str
    before: str
    after: str
    count: int


def compile_find(find: str, is_regex: bool, case_sensitive: bool) -> regex.Pattern:
    """The pattern to search for (`find` taken literally unless `is_regex`); regex.error when it is invalid."""
    flags = 0 if case_sensitive else regex.IGNORECASE
    return regex.compile(find if is_regex else regex.escape(find), flags)


def replace_all(pattern: regex.Pattern, replacement: str, captions: list[tuple[str, str]],
                caption_seconds: float = CAPTION_SECONDS, request_seconds: float = REQUEST_SECONDS) -> list[Change]:
    """The captions (name, text) the pattern changes, in order. TooSlow when one caption takes longer than
    `caption_seconds`, or all of them longer than `request_seconds`; regex.error or IndexError when the
    replacement is invalid. Nothing is written here, so a pattern stopped half way changes nothing."""
    deadline = time.monotonic() + request_seconds
    changes = []
    for name, text in captions:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            new, count = pattern.subn(replacement, text, timeout=min(caption_seconds, left))
        except TimeoutError:
            if left < caption_seconds:  # the request's time ran out, not this caption's
                raise TooSlow(f"This pattern takes too long over {len(captions):,} captions (it stopped at caption "
                              f"{name}): simplify it, or find plain text instead.") from None
            raise TooSlow(f"This pattern takes too long on caption {name}: simplify it (a repeat inside a repeat, "
                          "such as (a+)+ or (a|a)+, can take minutes), or find plain text instead.") from None
        if count:
            changes.append(Change(name, text, new, count))
    return changes
