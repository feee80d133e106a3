"""Frames of a video as dataset images: a few phone clips of a pet or a person become training pictures.

The video is read once, from start to end (only its keyframes when it is longer than LONG_VIDEO_S: much
faster, and a long video has plenty of them; a stretch no keyframe falls in is sought afterwards), cut into
equal stretches of about `every` seconds (2; at most `max_frames` in all, VIDEO_MAX_FRAMES), and of each stretch
the sharpest frame is kept: video is full of motion blur and focus hunting. A frame that looks like the one kept
before it (a still scene) is left out. Frames are turned as the phone recorded them (the display matrix), HDR ones
brought to SDR (app.video_hdr), and written as JPEGs at quality 95, named by their time in the video:
`clip-00m12.4s.jpg`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from app.imaging import NEAR_DUPLICATE_BITS, dhash
from app.sharpness import sharpness
from app.video_hdr import is_hdr, sdr_picture
from studio.job_reporter import JobReporter
from studio.jobs import JobError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"}
SECONDS_PER_FRAME = 2.0  # VIDEO_FRAME_SECONDS
LONG_VIDEO_S = 180.0
GAP_FRAMES = 12  # a stretch of a long video without a keyframe: the sharpest of its first frames
MAX_VIDEO_S = 2 * 3600  # longer than a film: surely not meant, and hours to read
PROBE_SIDE = 512  # sharpness and likeness are measured on the frame at about this size
UNSPECIFIED, BT709 = 2, 1  # AVColorSpace: a video that does not say its colour matrix, and HD's
HD_WIDTH, SD_HEIGHT = 1280, 576  # an untagged video this wide, or taller than SD, is HD (what players assume)
LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
REPORT_EVERY_S = 0.5
# a video named like a photo of its folder (IMG_0001.MOV beside IMG_0001.HEIC) is an iPhone Live Photo's moving
# part: the photo is the picture, so the video is skipped with this reason
LIVE_PHOTO_MOTION = "the moving part of a Live Photo: its photo is taken instead"


class Unreadable(JobError):
    """The file is not a video the studio can read; `reason` says why in a few words."""

    def __init__(self, label: str, reason: str):
        super().__init__(f"{label} cannot be read as a video: {reason}.")
        self.reason = reason


@dataclass
class Frame:
    name: str  # the file name it gets: clip-00m12.4s.jpg
    path: Path  # where it lies
    time: float  # seconds into the video


@dataclass
class Frames:
    frames: list[Frame] = field(default_factory=list)
    seconds: float = 0.0  # how long the video is
    alike: int = 0  # frames left out as alike the frame kept before them
    left: int = 0  # stretches not taken, for a limit of images
    hdr: bool = False  # its frames were HDR (HLG or PQ), turned into SDR (app.video_hdr)


def is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def clock(seconds: float) -> str:
    """"0:12", "12:05", "2:00:00"."""
    minutes, rest = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def extract_frames(path: Path, staging: Path, job: JobReporter, label: str, stem: str, max_frames: int,
                   max_pixels: int, limit: int | None = None, every: float = SECONDS_PER_FRAME) -> Frames:
    """The sharpest frame of each stretch of about `every` seconds of the video at `path`, as JPEGs in `staging`;
    Unreadable for a file that is no video, holds no video track, or has frames over `max_pixels`."""
    import av  # a large library: loaded only when a video comes

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise Unreadable(label, f"the file is damaged or not a video ({type(exc).__name__})") from None
    with container:
        if not container.streams.video:
            raise Unreadable(label, "it holds no video track")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a codec this build cannot decode, or a damaged track header
            raise Unreadable(label, "its video is in a format the studio cannot decode")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise Unreadable(label, f"its frames are {width}x{height} pixels, over the limit of {max_pixels:,} "
                                    "(MAX_IMAGE_PIXELS)")
        seconds = _duration(container, stream)
        if seconds is None:  # a browser's or a screen recorder's WebM: its frames would all come from its start
            job.update(phase="frames", message=f"Reading the length of {label}")
            seconds = _measured_duration(path, job)
        if seconds and seconds > MAX_VIDEO_S:
            raise Unreadable(label, f"it lasts {clock(seconds)}, more than {clock(MAX_VIDEO_S)}: cut out the part "
                                    "you want first")
        count = min(max_frames, max(1, round(seconds / every))) if seconds else max_frames
        out = Frames(seconds=seconds or 0.0)
        if limit is not None and count > limit:
            out.left, count = count - limit, limit
        if count == 0:
            return out
        stretch = (seconds / count) if seconds else every
        stream.thread_type = "AUTO"
        if seconds and seconds > LONG_VIDEO_S:
            stream.codec_context.skip_frame = "NONKEY"
        staging.mkdir(parents=True, exist_ok=True)
        picker = _Picker(out, staging, stem, max_pixels)
        reported, start = 0.0, None
        try:
            for frame in container.decode(stream):
                job.check_stop()
                if frame.time is None:
                    continue
                start = frame.time if start is None else start  # a stream need not begin at 0
                index = int((frame.time - start) // stretch)
                if index >= count:
                    break
                picker.offer(index, frame)
                if time.monotonic() - reported > REPORT_EVERY_S:
                    reported = time.monotonic()
                    total = f" of {clock(seconds)}" if seconds else ""
                    job.update(phase="frames", done=int(frame.time - start), total=int(seconds or 0),
                               message=f"Taking frames from {label}: {clock(frame.time - start)}{total}")
        except av.error.FFmpegError as exc:  # a cut-off or damaged file: the frames read so far are kept
            log.warning("reading %s stopped at a damaged part: %s", label, exc)
            if not picker.seen:
                raise Unreadable(label, f"its video cannot be decoded ({type(exc).__name__})") from None
        picker.finish()
        if not picker.seen and picker.oversized:
            raise Unreadable(label, f"its frames are {picker.oversized[0]}x{picker.oversized[1]} pixels, over the "
                                    f"limit of {max_pixels:,} (MAX_IMAGE_PIXELS)")
        if not picker.seen:
            raise Unreadable(label, "it holds no frame that can be decoded")
        if stream.codec_context.skip_frame == "NONKEY" and start is not None:
            _fill_gaps(container, stream, picker, start, stretch, count, job, label)
            out.frames.sort(key=lambda frame: frame.time)
    return out


def _fill_gaps(container, stream, picker: _Picker, start: float, stretch: float, count: int, job: JobReporter,
               label: str) -> None:
    """The stretches of a long video that no keyframe fell in (a screen recording's keyframes can be 10 s or more
    apart): each is sought and the sharpest of its first GAP_FRAMES frames taken, so the video still gives the
    frames asked for."""
    import av

    gaps = [index for index in range(count) if index not in picker.indices]
    stream.codec_context.skip_frame = "DEFAULT"
    for done, index in enumerate(gaps):
        job.check_stop()
        job.update(phase="frames", message=f"Taking frames from {label}: between keyframes, {done} of {len(gaps)}")
        begin = start + index * stretch
        taken = 0
        try:
            container.seek(int(begin / float(stream.time_base)), stream=stream)  # the keyframe before it
            for frame in container.decode(stream):
                if frame.time is None or frame.time < begin:
                    continue
                if frame.time >= begin + stretch or taken >= GAP_FRAMES:
                    break
                picker.offer(index, frame)
                taken += 1
        except av.error.FFmpegError as exc:  # a damaged part: the frames taken so far are kept
            log.warning("reading %s between its keyframes stopped at a damaged part: %s", label, exc)
            break
        picker.finish()


def _duration(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # av.time_base
    return None


def _measured_duration(path: Path, job: JobReporter) -> float | None:
    """The length of a video whose header does not say it, from its video packets read through once without
    decoding them (a few seconds for hours of video); None when it holds no timed packet."""
    import av

    first = last = None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            for count, packet in enumerate(container.demux(stream)):
                if count % 2000 == 0:
                    job.check_stop()
                if packet.pts is None or packet.time_base is None:
                    continue
                start, end = packet.pts * packet.time_base, (packet.pts + (packet.duration or 0)) * packet.time_base
                first = start if first is None else min(first, start)
                last = end if last is None else max(last, end)
    except av.error.FFmpegError as exc:  # a cut-off file: its length so far
        log.warning("measuring the length of %s stopped at a damaged part: %s", path.name, exc)
    return float(last - first) if first is not None and last > first else None


class _Picker:
    """Keeps the sharpest frame of the current stretch; writes it out when the next stretch begins.

    A stretch is taken once: a frame of a stretch already left (timestamps that start again, as in clips joined
    end to end, or that jump back and forth in a crafted file) or of none (before the first frame) is passed over,
    so a video never gives more frames than it has stretches (VIDEO_MAX_FRAMES, an import's limit). So is a frame
    over `max_pixels`: a stream may grow its pictures after the header the size was checked by."""

    def __init__(self, out: Frames, staging: Path, stem: str, max_pixels: int):
        self.out, self.staging, self.stem, self.max_pixels = out, staging, stem, max_pixels
        self.index, self.best, self.score, self.probe, self.last_hash = -1, None, -1.0, None, None
        self.seen, self.indices, self.closed = 0, set(), set()
        self.oversized: tuple[int, int] | None = None  # the size of a frame passed over as too large

    def offer(self, index: int, frame) -> None:
        if frame.width * frame.height > self.max_pixels:
            self.oversized = (frame.width, frame.height)
            return
        if index < 0 or (index != self.index and index in self.closed):
            return
        self.seen += 1
        self.indices.add(index)
        if index != self.index:
            self.finish()
            self.closed.add(self.index)
            self.index, self.best, self.score = index, None, -1.0
        probe = _luma(frame)
        score = sharpness(Image.fromarray(probe)) or 0.0
        if self.best is None or score > self.score:
            self.best, self.score, self.probe = frame, score, probe

    def finish(self) -> None:
        if self.best is None:
            return
        frame, self.best = self.best, None
        digest = int(dhash(Image.fromarray(self.probe)), 16)
        if self.last_hash is not None and bin(digest ^ self.last_hash).count("1") <= NEAR_DUPLICATE_BITS:
            self.out.alike += 1
            return
        self.last_hash = digest
        if is_hdr(frame):  # an iPhone's HLG, HDR10: turned into SDR, as the frame would look on an ordinary screen
            self.out.hdr = True
            picture = sdr_picture(frame)
        else:  # RGB by the frame's own colour matrix and range (a full-range clip is not read as a limited one)
            picture = frame.reformat(format="rgb24", src_colorspace=_matrix(frame),
                                     src_color_range=frame.color_range or None).to_image()
        if frame.rotation:
            picture = picture.rotate(frame.rotation, expand=True)  # as the phone was held
        minutes, tenths = divmod(round(frame.time * 10), 600)  # 59.96 s is 01m00.0s, not 00m60.0s
        name = f"{self.stem}-{minutes:02d}m{tenths / 10:04.1f}s.jpg"
        target = self.staging / f"{len(self.out.frames):05d}.jpg"
        picture.save(target, "JPEG", quality=95)
        self.out.frames.append(Frame(name, target, frame.time))


def _matrix(frame) -> int | None:
    """The colour matrix to read an SDR frame by: its own, or for an HD frame that names none BT.709, as players
    and browsers show it (the scaler's default, BT.601, turns greens and reds off by 20 levels); None: the frame's."""
    if frame.colorspace == UNSPECIFIED and (frame.width >= HD_WIDTH or frame.height > SD_HEIGHT):
        return BT709
    return None


def _luma(frame) -> np.ndarray:
    """The frame's brightness at about PROBE_SIDE: its luma plane read as it lies, every k-th pixel (4 times
    faster than scaling it; a sharpness score ranks the frames of a stretch alike either way), or scaled to grey
    for other pixel formats (10-bit HDR video)."""
    step = max(1, -(-max(frame.width, frame.height) // PROBE_SIDE))
    if frame.format.name in LUMA_FIRST:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        return np.ascontiguousarray(rows[:frame.height:step, :frame.width:step])
    return frame.reformat(width=max(1, frame.width // step), height=max(1, frame.height // step),
                          format="gray").to_ndarray()
