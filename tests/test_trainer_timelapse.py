"""Watch it learn: a preview prompt's pictures in turn (the base model's, then each preview step's) as an animated
WebP with the step under each frame, made once per latest step and kept beside the previews."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from studio.web import ApiError
from tests import test_trainer_api
from tests.test_trainer_previews_api import _job
from trainer.timelapse import BAR, SIDE, timelapse

app, client = test_trainer_api.app, test_trainer_api.client


def _png(color, size=(96, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _previews(job_dir, steps=(2, 4), prompts=2):
    base = job_dir / "samples" / "base"
    base.mkdir(parents=True, exist_ok=True)
    for i in range(prompts):
        (base / f"{i}.png").write_bytes(_png((10, 10, 10)))
    (base / "prompts.json").write_text(json.dumps({"prompts": [
        {"index": i, "prompt": f"zkw thing {i}", "seed": 42 + i, "key": f"k{i}", "file": f"{i}.png"}
        for i in range(prompts)]}))
    for step in steps:
        folder = job_dir / "samples" / f"step_{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(prompts):
            (folder / f"{i}.png").write_bytes(_png((step * 20, 40, 200)))
        (folder / "prompts.json").write_text(json.dumps({"step": step, "prompts": [
            {"index": i, "prompt": f"zkw thing {i}", "seed": 42 + i, "lora": f"{i}.png", "base": f"../base/{i}.png",
             "base_key": f"k{i}"} for i in range(prompts)]}))


def test_the_base_then_every_step_in_turn(tmp_path):
    _previews(tmp_path)
    path = timelapse(tmp_path, 1)
    assert path == tmp_path / "samples" / "timelapse" / "1-step_4-3.webp"
    with Image.open(path) as animation:
        assert animation.n_frames == 3 and animation.size == (96, 64 + BAR)
        colours = []
        for frame in range(3):
            animation.seek(frame)
            colours.append(animation.convert("RGB").getpixel((48, 32)))
    assert colours[0][2] < 30 and all(c[2] > 150 for c in colours[1:])  # the base model's, then the LoRA's
    made = path.stat().st_mtime_ns
    assert timelapse(tmp_path, 1) == path and path.stat().st_mtime_ns == made  # kept, not made again
    _previews(tmp_path, steps=(6,))  # a new preview step: a new animation, the older one goes
    assert timelapse(tmp_path, 1).name == "1-step_6-4.webp"
    assert sorted(p.name for p in (tmp_path / "samples" / "timelapse").iterdir()) == ["1-step_6-4.webp"]


def test_large_previews_are_made_smaller_and_one_picture_is_no_timelapse(tmp_path):
    _previews(tmp_path, steps=(), prompts=1)
    with pytest.raises(ApiError, match="no previews to show in turn yet"):
        timelapse(tmp_path, 0)
    folder = tmp_path / "samples" / "step_000002"
    folder.mkdir()
    (folder / "0.png").write_bytes(_png((200, 0, 0), (2048, 1024)))
    (folder / "prompts.json").write_text(json.dumps({"step": 2, "prompts": [{"index": 0, "lora": "0.png"}]}))
    (tmp_path / "samples" / "base" / "0.png").write_bytes(_png((0, 0, 0), (2048, 1024)))
    with Image.open(timelapse(tmp_path, 0)) as animation:
        assert animation.size == (SIDE, SIDE // 2 + BAR)
    with pytest.raises(ApiError):
        timelapse(tmp_path, 5)  # no such prompt


def test_the_samples_api_offers_them_and_the_route_serves_them(client, app):
    job_id, job_dir = _job(client, app)
    _previews(job_dir)
    answer = client.get(f"/api/jobs/{job_id}/samples").get_json()
    assert answer["timelapses"] == [{"index": 0, "url": f"/api/jobs/{job_id}/timelapse/0"},
                                    {"index": 1, "url": f"/api/jobs/{job_id}/timelapse/1"}]
    response = client.get(f"/api/jobs/{job_id}/timelapse/0")
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert Image.open(io.BytesIO(response.data)).n_frames == 3
    assert client.get(f"/api/jobs/{job_id}/timelapse/7").status_code == 404
    assert client.get("/api/jobs/nope/timelapse/0").status_code == 404
