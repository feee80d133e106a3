"""Find & replace patterns for captions, with a bound on the time they take.

A regular expression such as `(a|a)+$` backtracks for minutes on a caption of a few dozen letters, and the
dialog previews while the user types: Python's `re` cannot be stopped, so the `regex` package (which can, and
lets other threads run while it matches) runs every pattern with a timeout, per caption and per request.

Time is not all: the `regex` package writes out a counted repeat when it compiles, so `a{4294967294}` asks for all
the memory there is and `(?:a{1000}){1000}` for ~270 MB, before any caption is read. `compile_find` refuses a pattern
whose repeats come to more than PATTERN_ITEMS. And a replacement that grows every caption (an empty match, such as
`(?:)`, replaced by 10,000 letters) is stopped at the first caption that grows past the limit, not after all of them
were built in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import regex

CAPTION_SECONDS = 0.25  # what one caption may take
REQUEST_SECONDS = 2.0  # what all the captions of one request may take together
PATTERN_MAX = 10_000  # characters of a pattern (no caption is longer, so a literal one longer never matches)
PATTERN_ITEMS = 20_000  # what its counted repeats may come to, written out (~5 MB compiled)
_REPEAT = regex.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_TEMPLATE_ESCAPE = regex.compile(r"\\(?:g<[^>]*>|\d+|.)", regex.DOTALL)


class TooSlow(Exception):
    """The pattern ran past its time; the message says where, in one sentence."""


class TooBig(ValueError):
    """The pattern is too long, or its counted repeats too large, to compile; the message says so."""


class TooLong(Exception):
    """A replacement would make the caption `name` `length` characters long (more than that when `more`), past the
    limit given."""

    def __init__(self, name: str, length: int, more: bool = False):
        super().__init__(name, length, more)
        self.name, self.length, self.more = name, length, more


@dataclass
class Change:
    name: str
    before: str
    after: str
    count: int


def compile_find(find: str, is_regex: bool, case_sensitive: bool) -> regex.Pattern:
    """The pattern to search for (`find` taken literally unless `is_regex`); regex.error when it is invalid."""
    if len(find) > PATTERN_MAX:
        raise TooBig(f"The text to find is too long ({PATTERN_MAX:,} characters at most).")
    if is_regex and (items := written_out(find)) > PATTERN_ITEMS:
        raise TooBig(f"This pattern repeats too much ({items:,} steps written out; {PATTERN_ITEMS:,} at most): use "
                     "smaller counts in {...}, or + and * instead.")
    flags = 0 if case_sensitive else regex.IGNORECASE
    return regex.compile(find if is_regex else regex.escape(find), flags)


def written_out(pattern: str) -> int:
    """An upper bound on the steps of `pattern` with its counted repeats written out, as the regex package compiles
    it: each letter, escape or set is one, a group is its content, `{m,n}` multiplies what it follows by n (by m
    for `{m,}`)."""
    stack = [[0, 0]]  # per open group: [its size so far, the size of its last item]
    i = 0
    while i < len(pattern):
        char, item = pattern[i], 1
        if char == "\\":
            i += 2
            if pattern.startswith("{", i):  # \p{L}, \N{...}, \x{...}
                i = pattern.find("}", i) + 1 or len(pattern)
        elif char == "[":
            i += 1
            i += pattern.startswith("^", i)
            i += pattern.startswith("]", i)  # a ] first in a set is a letter
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
        elif char == "(":
            stack.append([0, 0])
            i += 1
            if pattern.startswith("?", i):  # (?:, (?=, (?<name>, (?i) ...: not part of what is matched
                while i < len(pattern) and pattern[i] not in ":=!>)":
                    i += 1
                i += i < len(pattern) and pattern[i] != ")"
            continue
        elif char == ")" and len(stack) > 1:
            item = max(stack.pop()[0], 1)
            i += 1
        elif char == "{" and (repeat := _REPEAT.match(pattern, i)) and (repeat[1] or repeat[3]):
            top = stack[-1]
            times = int(repeat[3] or repeat[1]) if repeat[2] else int(repeat[1])
            top[0] += top[1] * (times - 1)
            top[1] *= times
            i = repeat.end()
            continue
        elif char in "*+?|":  # a repeat (lazy or possessive too) or a branch adds no step
            i += 1
            continue
        else:
            i += 1
        stack[-1][0] += item
        stack[-1][1] = item
    return sum(frame[0] for frame in stack)


def replace_all(pattern: regex.Pattern, replacement: str, captions: list[tuple[str, str]],
                caption_seconds: float = CAPTION_SECONDS, request_seconds: float = REQUEST_SECONDS,
                max_length: int | None = None) -> list[Change]:
    """The captions (name, text) the pattern changes, in order. TooSlow when one caption takes longer than
    `caption_seconds`, or all of them longer than `request_seconds`; regex.error or IndexError when the
    replacement is invalid; TooLong at the first caption the change makes longer than `max_length` (stripped).
    Nothing is written here, so a pattern stopped half way changes nothing."""
    deadline = time.monotonic() + request_seconds
    # each replacement adds at least the template's own letters: past this many, the caption is surely too long,
    # so no more are written out (an empty match replaced by 10,000 letters, 10,000 times, is 100 million)
    letters = len(_TEMPLATE_ESCAPE.sub("", replacement))
    most = max_length // letters + 1 if max_length is not None and letters else 0
    changes = []
    for name, text in captions:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            new, count = pattern.subn(replacement, text, count=most, timeout=min(caption_seconds, left))
        except TimeoutError:
            if left < caption_seconds:  # the request's time ran out, not this caption's
                raise TooSlow(f"This pattern takes too long over {len(captions):,} captions (it stopped at caption "
                              f"{name}): simplify it, or find plain text instead.") from None
            raise TooSlow(f"This pattern takes too long on caption {name}: simplify it (a repeat inside a repeat, "
                          "such as (a+)+ or (a|a)+, can take minutes), or find plain text instead.") from None
        cut = bool(most) and count == most  # stopped before its last match: longer still
        if max_length is not None and (cut or len(new.strip()) > max_length):
            raise TooLong(name, len(new.strip()), cut)
        if count:
            changes.append(Change(name, text, new, count))
    return changes
