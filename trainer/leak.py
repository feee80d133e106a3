"""How much a LoRA changes pictures without its trigger word, measured on the previews.

Each preview prompt is rendered three times with one seed: the base model, the LoRA, and the LoRA with the
trigger word taken out of the prompt. The share of the LoRA's change that remains without the trigger word
(mean pixel difference to the base picture without it, over the same with it) says whether the LoRA stays on its
trigger word (near 0) or changes every prompt it is loaded for (near 1 or more: it leaks), which
`preserve_class` is for. Pictures are compared small, so it follows what changed in the picture (a face, the
colours, the composition), not sampling grain.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 96
# below this mean difference (on 0-1 pixel values) the LoRA has not changed the picture yet: no share to tell
MIN_CHANGE = 0.01
# from this share on, a finished job says the LoRA leaks and what to do about it
LEAKS = 0.6


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR), dtype=np.float32) / 255


def leak(base: Image.Image, lora: Image.Image, plain: Image.Image) -> float | None:
    """The share of the LoRA's change to `base` (the base model's picture) that `plain` (the LoRA's picture of
    the prompt without its trigger word) still shows; None while the LoRA barely changes the picture."""
    reference = _pixels(base)
    moved = float(np.abs(_pixels(lora) - reference).mean())
    if moved < MIN_CHANGE:
        return None
    return round(float(np.abs(_pixels(plain) - reference).mean()) / moved, 3)


def mean_share(entries: list[dict]) -> float | None:
    """The mean of the entries' `leak` (a preview step's prompts), None when none was measured."""
    values = [e["leak"] for e in entries if isinstance(e.get("leak"), int | float)]
    return round(sum(values) / len(values), 3) if values else None


def step_leak(step_folder: Path) -> float | None:
    """The mean share over a preview step's prompts (its prompts.json), None when none was measured."""
    try:
        return mean_share(json.loads((Path(step_folder) / "prompts.json").read_text("utf-8"))["prompts"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# the demo's tiny models are random: any LoRA on them changes every prompt alike, so the share says nothing there
DEMO_NOTE = (" (Demo mode: the tiny random models change every prompt alike, so this share says nothing about a "
             "LoRA here; on the real model it tells whether the LoRA stays on its trigger word.)")


def advice(share: float, demo: bool = False) -> str:
    text = (f"Without its trigger word the LoRA still makes {share:.0%} of its change to the previews: it changes "
            "every prompt it is loaded for, not only those with the trigger word. Preserve the class (advanced: the "
            "word your subject is, e.g. person) trains it to leave the rest as the base model draws it.")
    return text + DEMO_NOTE if demo else text
