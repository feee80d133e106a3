"""A video whose header does not say how long it is (what a browser's MediaRecorder and some screen recorders
write: a WebM without a duration): its length is read from its packets, so the frames taken spread over the whole
video, as for any other, instead of all coming from its first minutes."""

from __future__ import annotations

import io

import av

from app.video_frames import extract_frames
from tests.videos import scene


class _Job:
    def __init__(self):
        self.messages = []

    def check_stop(self) -> None:
        pass

    def update(self, **values) -> None:
        if "message" in values:
            self.messages.append(values["message"])


class _Stream:
    """A file that cannot be sought back, as a live recording is written: the muxer leaves out the duration."""

    def __init__(self):
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self.buffer.write(data)


def _webm_without_duration(seconds: int, fps: int = 5, scene_seconds: int = 4) -> bytes:
    sink = _Stream()
    with av.open(sink, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.codec_context.gop_size = fps
        for index in range(seconds * fps):
            frame = av.VideoFrame.from_image(scene(index // (fps * scene_seconds)))
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return sink.buffer.getvalue()


def test_frames_spread_over_a_video_that_does_not_say_its_length(tmp_path):
    clip = tmp_path / "screen.webm"
    clip.write_bytes(_webm_without_duration(24))
    with av.open(str(clip)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    job = _Job()
    taken = extract_frames(clip, tmp_path / "frames", job, clip.name, "screen", max_frames=3, max_pixels=10**8,
                           every=2.0)
    assert 23 <= taken.seconds <= 25
    times = [frame.time for frame in taken.frames]
    assert len(times) == 3 and times[-1] >= 16, times  # one from each third of the video, not from its first 6 s
    assert any("of 0:24" in message for message in job.messages), job.messages


def test_a_video_without_a_timed_packet_has_no_length(tmp_path):
    from app.video_frames import _measured_duration

    clip = tmp_path / "empty.webm"
    clip.write_bytes(_webm_without_duration(0))
    assert _measured_duration(clip, _Job()) is None
