"""Small real videos for the tests, encoded with the same library that reads them (H.264 in MP4): scenes of
random texture, each blurred but for one sharp frame, so a test can tell which frame was taken."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
from PIL import Image, ImageFilter

IDENTITY = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
TURNED_CLOCKWISE = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)  # a phone held upright


def scene(seed: int, size=(160, 96)) -> Image.Image:
    """A picture of its own (blocks of random colour, a red top-left corner to tell which way is up)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, size=(12, 20, 3), dtype=np.uint8)
    picture = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    picture.paste((255, 0, 0), (0, 0, 16, 16))
    return picture


def video_bytes(scenes: list[int], fps: int = 10, seconds_each: float = 2.0, sharp_at: int = 7,
                size=(160, 96), turned: bool = False) -> bytes:
    """An MP4: each scene (a seed) for `seconds_each`, every frame blurred but the `sharp_at`-th of each scene.
    `turned`: the track says to show it turned a quarter clockwise, as a phone held upright records."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for seed in scenes:
            sharp = scene(seed, size)
            blurred = sharp.filter(ImageFilter.GaussianBlur(3))
            for index in range(round(fps * seconds_each)):
                picture = sharp if index == sharp_at else blurred
                for packet in stream.encode(av.VideoFrame.from_image(picture)):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = buffer.getvalue()
    if turned:  # the track header's matrix (the last of the two in the file; the first is the movie's)
        at = data.rindex(IDENTITY)
        data = data[:at] + TURNED_CLOCKWISE + data[at + len(IDENTITY):]
    return data


HLG, PQ = "arib-std-b67", "smpte2084"


def hdr_video_bytes(signal: np.ndarray, transfer: str = HLG, frames: int = 5, fps: int = 10,
                    primaries: str = "bt2020", matrix: str | None = "bt2020nc") -> bytes:
    """An HDR clip as a recent phone records it: HEVC Main 10 in BT.2020 with the HLG (or PQ) transfer, every
    frame the picture `signal` (height x width x 3, the transfer's own signal values 0..1 in RGB of
    `primaries`). `primaries` "bt709" for a camera that records HLG in BT.709 (its matrix then BT.709's too);
    `matrix` None: the stream does not say which colour matrix it used (BT.2020's)."""
    from av.video.reformatter import ColorPrimaries, Colorspace, ColorTrc

    bt709 = primaries == "bt709"
    codes = (np.clip(signal, 0.0, 1.0) * 65535 + 0.5).astype(np.uint16)
    source = av.VideoFrame.from_ndarray(codes, format="rgb48le")
    frame = source.reformat(format="yuv420p10le", dst_colorspace=Colorspace.ITU709 if bt709 else Colorspace.BT2020,
                            dst_color_range=1)
    tags = f"colorprim={primaries}:transfer={transfer}" + (f":colormatrix={matrix}" if matrix else "")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=fps)
        stream.width, stream.height, stream.pix_fmt = signal.shape[1], signal.shape[0], "yuv420p10le"
        context = stream.codec_context
        context.color_primaries = ColorPrimaries.BT709 if bt709 else ColorPrimaries.BT2020
        context.colorspace, context.color_range = {"bt709": 1, "bt2020nc": 9, None: 2}[matrix], 1
        context.color_trc = ColorTrc.ARIB_STD_B67 if transfer == HLG else ColorTrc.SMPTE2084
        stream.options = {"x265-params": f"log-level=error:crf=4:{tags}"}
        for index in range(frames):
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()
