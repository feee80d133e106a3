"""Frames from a video: the studio's reading (decode, a sharpness score per frame, the kept frames written as
JPEGs) against a bare decode of every frame of the same file, in the same run; and the keyframes-only reading
used for long videos.

    .venv/bin/python benchmarks/video_frames.py [--seconds 20] [--size 1920x1080] [--block 40]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import video_frames  # noqa: E402
from studio.job_reporter import QuietReporter  # noqa: E402


def make_clip(path: Path, seconds: int, width: int, height: int, fps: int = 30, block: int = 40) -> None:
    """A phone-like clip: a new scene every 2 s (so every stretch gives a frame) of blocks of `block` px (small
    blocks: much detail, slow to decode, like real footage), the picture moving within it, a keyframe every
    second."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for second in range(seconds):
            if second % 2 == 0:
                blocks = rng.integers(0, 255, (height // block + 2, width // block + 2, 3), dtype=np.uint8)
                scene = np.kron(blocks, np.ones((block, block, 1), dtype=np.uint8))
                scene = np.pad(scene, ((0, 40), (0, 40), (0, 0)), mode="wrap")
            for index in range(fps):
                shift = (second % 2 * fps + index) % 40  # moving by a pixel a frame
                frame = np.ascontiguousarray(scene[shift:shift + height, shift:shift + width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def bare_decode(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def studio_read(path: Path, work: Path, long: bool) -> int:
    video_frames.LONG_VIDEO_S = 0.0 if long else 1e9
    shutil.rmtree(work, ignore_errors=True)
    return len(video_frames.extract_frames(path, work, QuietReporter(), path.name, "clip", 60, 10**9).frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--block", type=int, default=40, help="scene detail: 40 (flat, fast to decode) or 4")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, args.seconds, width, height, block=args.block)
        timings = {}
        for name, run in (("bare decode", lambda: bare_decode(clip)),
                          ("studio, every frame", lambda: studio_read(clip, Path(folder) / "a", long=False)),
                          ("studio, keyframes only", lambda: studio_read(clip, Path(folder) / "b", long=True))):
            best, count = float("inf"), 0
            for _ in range(2):
                start = time.perf_counter()
                count = run()
                best = min(best, time.perf_counter() - start)
            timings[name] = best
            print(f"{name:24s} {best:6.2f} s  ({count} {'frames decoded' if name == 'bare decode' else 'kept'})")
        bare = timings["bare decode"]
        print(f"ratio studio / bare decode: every frame {timings['studio, every frame'] / bare:.2f}, "
              f"keyframes only {timings['studio, keyframes only'] / bare:.2f} "
              f"({args.seconds} s of {width}x{height} at 30 fps, blocks of {args.block} px)")


if __name__ == "__main__":
    main()
