"""A run with thousands of preview steps: its timelapse shows at most MAX_FRAMES pictures (the base model's, the last
step's, evenly picked steps between), so making one while a request waits holds a bounded number of decoded frames;
a short run still shows every step."""

from __future__ import annotations

import io
import json

from PIL import Image

from trainer import timelapse as tl


def _png(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


def _run(job_dir, steps: int, prompts: int = 1):
    """A job with the base model's picture (black) and `steps` preview steps, step n's picture a grey that grows
    with n (white at the last)."""
    base = job_dir / "samples" / "base"
    base.mkdir(parents=True)
    (base / "prompts.json").write_text(json.dumps({"prompts": [
        {"index": i, "prompt": f"p{i}", "key": f"k{i}"} for i in range(prompts)]}))
    for i in range(prompts):
        (base / f"{i}.png").write_bytes(_png(0))
    for step in range(1, steps + 1):
        folder = job_dir / "samples" / f"step_{step:06d}"
        folder.mkdir()
        for i in range(prompts):
            (folder / f"{i}.png").write_bytes(_png(40 + round(215 * step / steps)))
        (folder / "prompts.json").write_text(json.dumps({"step": step, "prompts": [
            {"index": i, "prompt": f"p{i}", "base_key": f"k{i}"} for i in range(prompts)]}))


def _levels(path) -> list[int]:
    with Image.open(path) as animation:
        out = []
        for frame in range(animation.n_frames):
            animation.seek(frame)
            out.append(animation.convert("RGB").getpixel((8, 8))[0])
        return out


def test_thousands_of_preview_steps_make_at_most_the_frame_budget(tmp_path):
    steps = 400
    _run(tmp_path, steps)
    path = tl.timelapse(tmp_path, 0)
    assert path.name == f"0-step_{steps}-{steps + 1}.webp"  # named for every picture there is, not only those shown
    levels = _levels(path)
    assert len(levels) == tl.MAX_FRAMES  # frames held decoded at once while the request waits: bounded
    assert levels[0] < 20 and levels[-1] > 240  # the base model's first, the last step's last
    assert levels == sorted(levels)  # in step order, from the whole run rather than its start
    assert levels[len(levels) // 2] in range(120, 180)


def test_evenly_keeps_the_ends_and_spaces_the_rest():
    picked = tl.evenly(list(range(1000)), 48)
    gaps = {b - a for a, b in zip(picked, picked[1:], strict=False)}
    assert len(picked) == 48 and picked[0] == 0 and picked[-1] == 999 and gaps <= {21, 22}
    assert tl.evenly(list(range(48)), 48) == list(range(48))
    assert tl.evenly(list(range(3)), 48) == [0, 1, 2]


def test_a_short_run_still_shows_every_step(tmp_path):
    _run(tmp_path, 12, prompts=2)
    made = dict(tl.every(tmp_path))
    assert sorted(made) == [0, 1]
    for path in made.values():
        levels = _levels(path)
        assert len(levels) == 13 and levels == sorted(levels) and len(set(levels)) == 13
