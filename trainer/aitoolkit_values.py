"""Numbers of an ai-toolkit config as this studio's settings take them (trainer.aitoolkit_config): YAML's strings
of numbers read, whole numbers past any setting's range named instead of taken, counts kept whole or stated as they
are, preview sides on the multiples of 16 the model needs."""

from __future__ import annotations

import math

LARGEST = 10**15  # past every setting's range, and past what a float holds exactly


def number(value) -> float | None:
    """A finite number of the config (YAML reads 1e-4 as a string: its float grammar wants a dot); None otherwise,
    and for a whole number past LARGEST (no setting's value; too_large says so)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return value if abs(value) <= LARGEST else None
    return value if math.isfinite(value) else None


def whole(value: float) -> int | float:
    """A count (steps, rank, ...) as a whole number; a fraction stays as stated, so the form says the setting needs a
    whole number instead of cutting 2.5 steps to 2 unseen."""
    return int(value) if float(value).is_integer() else value


def sixteen(side: float) -> int:
    """A side in pixels as the nearest multiple of 16 (halves up), 64 at least."""
    return max(64, int((side + 8) // 16) * 16)


def too_large(value, path: str, found: list[str], budget: list[int]) -> None:
    """The places of the whole numbers past LARGEST in `value` (a few thousand values looked at, at most)."""
    budget[0] -= 1
    if budget[0] < 0 or len(found) >= 5:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            too_large(item, f"{path}.{key}" if path else str(key), found, budget)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            too_large(item, f"{path}[{index}]", found, budget)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST:
        found.append(path)
