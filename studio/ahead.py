"""Work on several threads, results in order: the next items are prepared while the caller uses the current
one (an export converting phone photos, latents waiting for the next pictures). Pillow and numpy leave
Python's lock while they decode, resize and encode, so threads use the cores."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

THREADS = min(8, os.cpu_count() or 2)


def in_order(work: Callable, items: Iterable, threads: int = THREADS, between: Callable[[], None] | None = None,
             name: str = "ahead") -> Iterator:
    """`work(item)` of each item, in the items' order, computed on `threads` threads at most 2 x `threads` items
    ahead (not the whole list: memory stays bounded). `between` runs before each result is handed over (a stop
    check: what it raises ends the work, and the items not started are never started). An exception of `work`
    is raised where its result would have been handed over."""
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=name)
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= 2 * threads:
                if between is not None:
                    between()
                yield pending.popleft().result()
        while pending:
            if between is not None:
                between()
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
