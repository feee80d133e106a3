"""A video whose timestamps start again (clips joined end to end, `cat a.ts b.ts`, or a crafted file whose
timestamps jump back and forth) gives no more frames than it has stretches: VIDEO_MAX_FRAMES and an import's limit
hold. A stream whose pictures grow after its header (where the size limit was checked) gives no frame over the
limit."""

from __future__ import annotations

import io

import av
from PIL import Image

from app.video_frames import extract_frames
from tests.videos import scene


class _Job:
    def check_stop(self) -> None:
        pass

    def update(self, **values) -> None:
        pass


def _ts(first_second: int, seconds: int, size=(160, 96), seed: int = 0, fps: int = 5) -> bytes:
    """An MPEG-TS clip whose timestamps begin at `first_second`, a new scene every two seconds."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.gop_size = fps
        for index in range(seconds * fps):
            frame = av.VideoFrame.from_image(scene(seed + index // (2 * fps), size))
            frame.pts = first_second * fps + index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def test_clips_joined_end_to_end_give_no_more_frames_than_asked(tmp_path):
    clip = tmp_path / "joined.mp4"
    clip.write_bytes(_ts(0, 12) + _ts(0, 24, seed=100))  # the second clip's timestamps start at 0 again
    taken = extract_frames(clip, tmp_path / "frames", _Job(), clip.name, "joined", max_frames=6, max_pixels=10**8,
                           limit=3)
    assert len(taken.frames) == 3  # the limit asked for, not a frame more per restart
    assert len({frame.name for frame in taken.frames}) == 3
    assert len(list((tmp_path / "frames").iterdir())) == 3


def test_frames_that_grow_past_the_pixel_limit_are_passed_over(tmp_path):
    clip = tmp_path / "grows.mp4"
    clip.write_bytes(_ts(0, 2, size=(64, 64)) + _ts(2, 4, size=(480, 480), seed=50))  # the header says 64x64
    taken = extract_frames(clip, tmp_path / "frames", _Job(), clip.name, "grows", max_frames=5,
                           max_pixels=64 * 64 * 2)
    assert taken.frames
    for frame in taken.frames:
        with Image.open(frame.path) as picture:
            assert picture.size == (64, 64)
