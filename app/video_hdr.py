"""HDR video frames as the SDR pictures people expect: an iPhone records HLG in BT.2020 by default (Android
phones and action cameras often PQ, "HDR10"). Read like an ordinary video, such a frame comes out grey and
flat, its colours washed out (BT.2020 numbers read as BT.709 ones) and its highlights dull; a LoRA trained on
it learns that look.

The frame is read as 16-bit BT.2020 RGB by its own colour matrix and range, its signal turned into light
relative to the HDR reference white (BT.2408: 75% HLG, 203 cd/m2, is where SDR's white sits), HLG's system
gamma applied (1.2, for the nominal 1000 cd/m2 display), the colours moved into BT.709/sRGB primaries,
highlights above the reference white rolled off smoothly by their brightest channel up to 1000 cd/m2 (the
hue kept; clouds and lamps keep their shape instead of going flat white), and sRGB encoded. Lookup tables
carry the curves, and the frame goes in bands of rows on several threads: a 4K frame in 0.22 s on 2 cores
(benchmarks/video_hdr.py). The video library's own colour management agrees with this within a few levels on
greys below the reference white (about ten on saturated colours: it applies the system gamma differently), but
clips everything above it, and builds its tables again for every frame (1.5 s) unless one context is kept.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from PIL import Image

HLG, PQ = 18, 16  # AVColorTransferCharacteristic: ARIB STD-B67, SMPTE ST 2084
REFERENCE_NITS = 203.0  # BT.2408 HDR reference white
PEAK = 1000.0 / REFERENCE_NITS  # the brightest light kept apart: a 1000 cd/m2 display (HLG's nominal one)
KNEE = 0.8  # relative light above this is rolled off, PEAK reaching 1.0 (SDR white)
SPAN = 1.0 - KNEE
REACH = (PEAK - KNEE) / SPAN
LEVELS = 16384  # the sRGB encoding table's resolution over 0..1
ROWS = 64  # rows converted at a time
THREADS = 8
# by the frame's primaries (AVColorPrimaries): the matrix into BT.709's, and the luma weights of HLG's system gamma
BT2020 = (np.array([[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]]),
          np.array([0.2627, 0.6780, 0.0593]))
PRIMARIES = {
    1: (np.eye(3), np.array([0.2126, 0.7152, 0.0722])),  # BT.709: some cameras record HLG in it
    9: BT2020,
    12: (np.array([[1.2249, -0.2247, 0.0], [-0.0420, 1.0419, 0.0], [-0.0197, -0.0786, 1.0979]]),  # Display P3
         np.array([0.2290, 0.6917, 0.0793])),
}
# the frame's colour matrix (AVColorSpace) as the scaler names it; an HDR frame that names none is BT.2020 (9)
MATRICES = {1: 1, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}  # BT.709, BT.601 (two names), SMPTE 240M, BT.2020 (NCL, CL)


def is_hdr(frame) -> bool:
    return frame.color_trc in (HLG, PQ)


def sdr_picture(frame) -> Image.Image:
    """The RGB picture of an HDR `frame` (is_hdr) in sRGB. Its primaries are BT.2020 unless it says BT.709 or
    Display P3, and its colour matrix BT.2020's unless it says another."""
    matrix = MATRICES.get(frame.colorspace, 9)
    signal = frame.reformat(format="rgb48le", src_colorspace=matrix,
                            src_color_range=frame.color_range or None).to_ndarray()
    to_bt709, luma = PRIMARIES.get(frame.color_primaries, BT2020)
    to_bt709, luma = to_bt709.astype(np.float32), luma.astype(np.float32)
    picture = np.empty(signal.shape, dtype=np.uint8)

    def convert(top: int) -> None:  # a band at a time: its floats stay in the CPU's cache
        picture[top:top + ROWS] = _band(signal[top:top + ROWS], frame.color_trc, to_bt709, luma)

    with ThreadPoolExecutor(min(THREADS, os.cpu_count() or 1), thread_name_prefix="hdr") as pool:
        list(pool.map(convert, range(0, signal.shape[0], ROWS)))  # numpy lets go of the GIL: 1.8x on 2 cores
    return Image.fromarray(picture, "RGB")


def _band(signal: np.ndarray, transfer: int, to_bt709: np.ndarray, weights: np.ndarray) -> np.ndarray:
    light = _to_light(transfer)[signal]  # relative to the reference white, in the frame's primaries
    if transfer == HLG:
        luma = light @ weights
        np.maximum(luma, 0.0, out=luma)
        light *= (luma ** 0.2 / _hlg_white())[..., None]
    light = light @ to_bt709.T
    np.maximum(light, 0.0, out=light)  # colours outside BT.709 are clipped to its edge
    _roll_off(light)
    light *= LEVELS - 1
    light += 0.5
    np.minimum(light, LEVELS - 1, out=light)
    return _srgb_table()[light.astype(np.uint16)]


def _roll_off(light: np.ndarray) -> None:
    """Light between KNEE and PEAK (by the brightest channel of each pixel) compressed into KNEE..1.0 by an
    extended Reinhard curve (slope 1 at the knee, PEAK reaches 1.0), all channels scaled alike so the hue
    stays; at and below KNEE nothing changes, above PEAK is white."""
    brightest = np.maximum(np.maximum(light[..., 0], light[..., 1]), light[..., 2])  # 10x light.max(axis=-1)
    over = np.clip(brightest - KNEE, 0.0, PEAK - KNEE) / SPAN
    rolled = KNEE + SPAN * over * (1.0 + over / REACH ** 2) / (1.0 + over)
    light *= np.where(over > 0.0, rolled / np.maximum(brightest, KNEE), 1.0)[..., None]


@lru_cache(maxsize=2)
def _to_light(transfer: int) -> np.ndarray:
    """Each 16-bit signal value's light. HLG: scene light (0..1; the system gamma and _hlg_white follow).
    PQ: display light over the reference white."""
    signal = np.arange(65536, dtype=np.float64) / 65535.0
    if transfer == HLG:
        a, b, c = 0.17883277, 0.28466892, 0.55991073
        light = np.where(signal <= 0.5, signal * signal / 3.0, (np.exp((signal - c) / a) + b) / 12.0)
    else:
        m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
        power = signal ** (1.0 / m2)
        light = (np.maximum(power - c1, 0.0) / (c2 - c3 * power)) ** (1.0 / m1) * 10000.0 / REFERENCE_NITS
    return light.astype(np.float32)


@lru_cache(maxsize=1)
def _hlg_white() -> float:
    """What 75% HLG grey (the reference white) becomes after the system gamma: the divisor that puts it at 1.0
    (a 1000 cd/m2 display shows it at 203)."""
    scene = float(_to_light(HLG)[round(0.75 * 65535)])
    return scene ** 1.2


@lru_cache(maxsize=1)
def _srgb_table() -> np.ndarray:
    light = np.linspace(0.0, 1.0, LEVELS)
    encoded = np.where(light <= 0.0031308, light * 12.92, 1.055 * light ** (1 / 2.4) - 0.055)
    return np.clip(encoded * 255.0 + 0.5, 0, 255).astype(np.uint8)
