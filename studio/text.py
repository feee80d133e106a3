"""Small helpers for the sentences the studio shows."""

from __future__ import annotations


def plural(count: int, one: str, many: str | None = None) -> str:
    """"1 image", "3 images" (`many` for irregular words: plural(n, "match", "matches"))."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def name_list(names: list[str], shown: int = 3) -> str:
    """"a.png, b.png, c.png and 2 more": a short list for one sentence."""
    head = ", ".join(names[:shown])
    rest = len(names) - shown
    return f"{head} and {rest} more" if rest > 0 else head
