"""HDR frames brought to SDR (app.video_hdr) against the bare read of the same frame as if it were SDR (what the
studio did before: colours washed out), and against the video library's own colour management, in the same
run, on one decoded 10-bit HLG frame of random texture.

    .venv/bin/python benchmarks/video_hdr.py [--size 3840x2160] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, Colorspace, ColorTrc, VideoReformatter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.video_hdr import HLG, sdr_picture  # noqa: E402


def hlg_frame(width: int, height: int):
    signal = np.random.default_rng(0).integers(0, 65535, (height, width, 3), dtype=np.uint16)
    frame = av.VideoFrame.from_ndarray(signal, format="rgb48le")
    frame = frame.reformat(format="yuv420p10le", dst_colorspace=Colorspace.BT2020, dst_color_range=1)
    frame.color_trc, frame.color_primaries = HLG, ColorPrimaries.BT2020
    return frame


def best_of(repeat: int, work) -> float:
    work()  # tables built, caches warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="3840x2160")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    frame = hlg_frame(width, height)
    bare = best_of(args.repeat, lambda: frame.reformat(format="rgb24", src_color_range=1).to_image())
    ours = best_of(args.repeat, lambda: sdr_picture(frame))
    managed = {"format": "rgb24", "dst_color_trc": ColorTrc.IEC61966_2_1, "dst_color_primaries": ColorPrimaries.BT709}
    reused = VideoReformatter()
    library = best_of(args.repeat, lambda: reused.reformat(frame, **managed).to_image())
    fresh = best_of(args.repeat, lambda: VideoReformatter().reformat(frame, **managed).to_image())
    print(f"{width}x{height} HLG frame, best of {args.repeat}:")
    print(f"  read as SDR (bare)           {bare:6.3f} s")
    print(f"  studio, HDR to SDR           {ours:6.3f} s  ({ours / bare:.1f}x bare)")
    print(f"  library colour management    {library:6.3f} s  ({library / bare:.1f}x bare, "
          f"{library / ours:.2f}x studio; one context for every frame; clips above the reference white)")
    print(f"  the same, a context a frame  {fresh:6.3f} s  ({fresh / bare:.1f}x bare, {fresh / ours:.2f}x studio; "
          "what frame.reformat does for each decoded frame)")


if __name__ == "__main__":
    main()
