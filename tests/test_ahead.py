"""Work on several threads, results in order: the order holds whatever finishes first, only a few items run
ahead of the caller, an error surfaces where its result would have been, and a stop starts nothing more."""

from __future__ import annotations

import threading
import time

import pytest

from studio.ahead import in_order


def test_results_come_in_order_and_only_a_few_run_ahead():
    started: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            started.append(n)
        time.sleep(0.02 * (5 - n % 5))  # later items often finish first
        return n * n

    results = in_order(work, range(40), threads=3)
    assert [next(results) for _ in range(4)] == [0, 1, 4, 9]
    assert len(started) <= 4 + 2 * 3  # what was handed over, and at most two rounds of threads beyond it
    assert list(results) == [n * n for n in range(4, 40)]


def test_an_error_surfaces_in_its_place_and_a_stop_starts_nothing_more():
    def work(n: int) -> int:
        if n == 3:
            raise ValueError("item 3 is broken")
        return n

    results = in_order(work, range(10), threads=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3 is broken"):
        next(results)

    started: list[int] = []
    handed = [0]

    def slow(n: int) -> int:
        started.append(n)
        time.sleep(0.05)
        return n

    def between() -> None:
        handed[0] += 1
        if handed[0] > 2:
            raise InterruptedError("stop")

    with pytest.raises(InterruptedError):
        list(in_order(slow, range(100), threads=2, between=between))
    time.sleep(0.2)
    assert len(started) <= 2 + 2 * 2 + 2  # handed over, queued ahead, and those running when it stopped
