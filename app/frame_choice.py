"""How many frames an import takes from its videos, when the request says so: `frame_seconds` (one frame for
each stretch of that many seconds) and `max_frames` (at most that many from one video); otherwise the pod's
settings (VIDEO_FRAME_SECONDS, VIDEO_MAX_FRAMES). The upload panel sends the choice made under the videos it
uploads; an import that runs again ("Import the rest") keeps it (job config)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from app.video_frames import VIDEO_EXTENSIONS
from studio.settings import Settings
from studio.web import ApiError

FRAME_SECONDS = (0.25, 600.0)
MAX_FRAMES = (1, 1000)


def check_frames(values: Mapping) -> dict:
    """The choice a request makes ({} when none), from a JSON body or a form (numbers as text); ApiError with a
    sentence for a value out of range or not a number."""
    chosen = {}
    seconds, frames = values.get("frame_seconds"), values.get("max_frames")
    if seconds not in (None, ""):
        number = _number(seconds)
        if number is None or not FRAME_SECONDS[0] <= number <= FRAME_SECONDS[1]:
            raise ApiError(f"'frame_seconds' must be a number of seconds from {FRAME_SECONDS[0]:g} to "
                           f"{FRAME_SECONDS[1]:g}: one frame is taken from each stretch that long.", 422)
        chosen["frame_seconds"] = number
    if frames not in (None, ""):
        number = _number(frames)
        if number is None or number != int(number) or not MAX_FRAMES[0] <= number <= MAX_FRAMES[1]:
            raise ApiError(f"'max_frames' must be a whole number from {MAX_FRAMES[0]} to {MAX_FRAMES[1]:,}: the "
                           "most frames taken from one video.", 422)
        chosen["max_frames"] = int(number)
    return chosen


def page_defaults(settings: Settings) -> dict:
    """What a page's frames choice starts from (frame_choice.js reads it from its box's data-frames)."""
    return {"videos": sorted(VIDEO_EXTENSIONS), "frame_seconds": settings.video_frame_seconds,
            "max_frames": settings.video_max_frames}


def in_config(chosen: Mapping | None) -> dict:
    """What an import's job config keeps of the choice, so that "Import the rest" makes the same ({} for none)."""
    return {"frames": dict(chosen)} if chosen else {}


def with_frames(settings: Settings, chosen: Mapping | None) -> Settings:
    """`settings` with the frames an import was asked for (check_frames, or a job's config) in place of the pod's."""
    if not chosen:
        return settings
    return dataclasses.replace(settings,
                               video_frame_seconds=float(chosen.get("frame_seconds", settings.video_frame_seconds)),
                               video_max_frames=int(chosen.get("max_frames", settings.video_max_frames)))


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return number if math.isfinite(number) else None
