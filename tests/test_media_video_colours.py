"""The colours of frames taken from a video that does not say which colour matrix it was encoded with (a screen
recording, some camera apps, a clip cut by an editor that drops the tag): an HD one is read as BT.709, as players
and browsers show it, not by the scaler's default for SD video (BT.601), which turns greens and reds off."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image

from app.video_frames import extract_frames

GREEN = (30, 180, 60)


class _Job:
    def check_stop(self) -> None:
        pass

    def update(self, **values) -> None:
        pass


def _untagged_clip(size: tuple[int, int], matrix: int) -> bytes:
    """A clip of one flat colour, its YUV made by `matrix` (AVColorSpace: 1 BT.709, 5 BT.601), no matrix tagged."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        picture = av.VideoFrame.from_image(Image.new("RGB", size, GREEN))
        frame = picture.reformat(format="yuv420p", dst_colorspace=matrix, dst_color_range=1)
        for index in range(3):
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def _colour(tmp_path: Path, data: bytes, name: str) -> np.ndarray:
    clip = tmp_path / f"{name}.mp4"
    clip.write_bytes(data)
    with av.open(str(clip)) as container:
        assert next(container.decode(video=0)).colorspace == 2  # the clip names no colour matrix
    frames = extract_frames(clip, tmp_path / name, _Job(), clip.name, name, 10, 10**9)
    with Image.open(frames.frames[0].path) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.int16)[8:-8, 8:-8].reshape(-1, 3).mean(axis=0)


def test_an_untagged_hd_clip_keeps_its_colours(tmp_path):
    colour = _colour(tmp_path, _untagged_clip((1280, 720), matrix=1), "hd")
    assert np.abs(colour - GREEN).max() < 6, colour


def test_an_untagged_portrait_clip_is_hd_too(tmp_path):
    colour = _colour(tmp_path, _untagged_clip((720, 1280), matrix=1), "portrait")
    assert np.abs(colour - GREEN).max() < 6, colour


def test_an_untagged_sd_clip_is_read_as_sd(tmp_path):
    colour = _colour(tmp_path, _untagged_clip((640, 480), matrix=5), "sd")
    assert np.abs(colour - GREEN).max() < 6, colour
