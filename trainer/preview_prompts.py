"""Options inside a preview prompt, written the way kohya's sd-scripts and ai-toolkit read them, so prompts copied
from their configs work here: `a portrait of [trigger] --w 832 --h 1216 --d 7`.

    --w N / --h N          width / height in pixels (a multiple of 16, 64-4096; the job's sample size otherwise)
    --d N / --seed N       seed (the job's seed plus the prompt's place otherwise)
    --s N / --steps N      sampling steps (1-100)
    --l X / --cfg X        guidance scale (0-20; Z-Image-Turbo renders without it: 0)
    --n TEXT               negative prompt (used only with a guidance scale above 0)
    --m X                  LoRA strength for this preview (0-2)

A value out of range is brought into it, an option the studio does not know is left out of the prompt, and
both are said in the form's advice (never refused: a pasted prompt list always starts). Torch-free: the web
process reads it for the form, the estimate and the Try panel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FLAGS = {"w": "width", "h": "height", "d": "seed", "seed": "seed", "s": "steps", "steps": "steps",
         "l": "guidance", "cfg": "guidance", "n": "negative", "m": "strength"}
# an option starts with " --" and a letter at the start of a word; "a -- b" and "x--y" stay text
_SPLIT = re.compile(r"(?:^|\s)--(?=[A-Za-z])")
SIDE = (64, 4096)
STEPS = (1, 100)
GUIDANCE = (0.0, 20.0)
STRENGTH = (0.0, 2.0)
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class PreviewPrompt:
    """One preview prompt with its options read: `text` is what the text encoder sees ([trigger] still in it)."""

    text: str
    width: int
    height: int
    seed: int
    steps: int
    guidance: float
    negative: str = ""
    strength: float = 1.0
    notes: tuple[str, ...] = ()  # what was brought into range or left out

    @property
    def area(self) -> float:
        """Megapixels of 1024x1024."""
        return self.width * self.height / 1024**2

    @property
    def settings(self) -> dict:
        """What makes its picture differ besides the text (for cache keys and prompts.json)."""
        return {"width": self.width, "height": self.height, "seed": self.seed, "steps": self.steps,
                "guidance": self.guidance, "negative": self.negative, "strength": self.strength}


def parse(prompt: str, config, index: int = 0) -> PreviewPrompt:
    """`prompt` (one of config.sample_prompts) with its options read; the job's settings fill the rest."""
    text, values, notes = read(prompt)
    width = _side(values, "width", config.sample_width, notes)
    height = _side(values, "height", config.sample_height, notes)
    seed = _whole(values["seed"], (0, MAX_SEED), "--d", notes) if "seed" in values else config.seed + index
    steps = _whole(values["steps"], STEPS, "--s", notes) if "steps" in values else config.sample_steps
    guidance = (_clamp(values["guidance"], GUIDANCE, "--l", notes) if "guidance" in values
                else float(config.guidance_scale))
    strength = _clamp(values["strength"], STRENGTH, "--m", notes) if "strength" in values else 1.0
    if not text:
        notes.append("there is no text before its options, so it renders the trigger word alone (or nothing).")
    negative = values.get("negative", "")
    if negative and guidance <= 0:
        notes.append("--n (a negative prompt) is used only with a guidance scale above 0 (--l); Z-Image-Turbo "
                     "previews render without one.")
        negative = ""
    return PreviewPrompt(text, width, height, seed, steps, guidance, negative, strength, tuple(notes))


def read(prompt: str) -> tuple[str, dict, list[str]]:
    """(the text, the options given as {width, height, seed, steps, guidance, negative, strength}, notes on what
    was left out): the values as written, before they are brought into range."""
    parts = _SPLIT.split(prompt)
    text, values, notes = " ".join(parts[0].split()), {}, []
    for part in parts[1:]:
        name, _, value = part.partition(" ")
        name, value = name.strip(), value.strip()
        key = FLAGS.get(name.lower())
        if key is None:
            notes.append(f"--{name} is not a preview option here (known: --w, --h, --d, --s, --l, --n, --m); "
                         "it is left out of the prompt.")
            continue
        if key == "negative":
            values[key] = " ".join(value.split())
            continue
        number = _number(value)
        if number is None:
            notes.append(f"--{name} needs a number, not {value!r}; the job's setting is used.")
            continue
        values[key] = number
        rest = " ".join(value.split()[1:])
        if rest:  # words after an option's number are not the prompt's: ai-toolkit and kohya drop them too
            notes.append(f"--{name} {value.split()[0]} {rest}: {rest!r} is left out of the prompt (only words "
                         "before the first option are the prompt's).")
    return text, values, notes


def preview_prompts(config) -> list[PreviewPrompt]:
    return [parse(prompt, config, index) for index, prompt in enumerate(config.sample_prompts)]


def advice(config) -> list[dict[str, str]]:
    """The form's warnings for options brought into range or left out, naming the prompt."""
    return [{"field": "sample_prompts", "message": f"Preview prompt {i + 1}: {note}"}
            for i, prompt in enumerate(preview_prompts(config)) for note in prompt.notes]


def _number(value: str) -> float | None:
    try:
        number = float(value.split()[0]) if value else None
    except ValueError:
        return None
    return number if number is not None and number == number and abs(number) != float("inf") else None


def _side(values: dict, key: str, default: int, notes: list[str]) -> int:
    if key not in values:
        return default
    flag = "--w" if key == "width" else "--h"
    side = _whole(values[key], SIDE, flag, notes)
    if side % 16:
        notes.append(f"{flag} {side} is not a multiple of 16; {side // 16 * 16} is used.")
        side = side // 16 * 16
    return side


def _whole(value: float, bounds: tuple[int, int], flag: str, notes: list[str]) -> int:
    whole = int(value)
    if whole != value:
        notes.append(f"{flag} takes a whole number; {whole} is used.")
    return int(_clamp(whole, bounds, flag, notes))


def _clamp(value: float, bounds: tuple[float, float], flag: str, notes: list[str]) -> float:
    low, high = bounds
    if value < low or value > high:
        kept = min(max(value, low), high)
        notes.append(f"{flag} {value:g} is outside {low:g}-{high:g}; {kept:g} is used.")
        return kept
    return value
