"""HDR video (an iPhone's HLG, HDR10's PQ) gives frames in ordinary SDR colours: greys and colours as the video
library's own colour management makes them (an independent implementation of the same standards), highlights
above the reference white rolled off instead of clipped flat, and an import that says the video was HDR. Real
HEVC Main 10 clips, encoded and decoded for real."""

from __future__ import annotations

import contextlib

import av
import numpy as np
import pytest
from av.video.reformatter import ColorPrimaries, ColorTrc
from PIL import Image

from app.video_frames import extract_frames
from app.video_hdr import sdr_picture
from studio.job_reporter import QuietReporter
from tests import test_datasets_support as support
from tests.test_datasets_support import upload
from tests.videos import HLG, PQ, hdr_video_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

PATCH = 16
# signal levels below the reference white (203 cd/m2: 75% HLG, 58% PQ), and a saturated red in BT.2020 signal values
GREYS = {HLG: [0.3, 0.45, 0.6, 0.7], PQ: [0.2, 0.35, 0.45, 0.55]}
RED = {HLG: [0.62, 0.3, 0.25], PQ: [0.52, 0.35, 0.3]}
HIGHLIGHTS = [0.8, 0.9, 1.0]  # HLG above it


def _patches(levels: list) -> np.ndarray:
    signal = np.zeros((2 * PATCH, PATCH * len(levels), 3))
    for index, level in enumerate(levels):
        signal[:, index * PATCH:(index + 1) * PATCH] = level
    return signal


def _centres(picture, count: int) -> np.ndarray:
    pixels = np.asarray(picture.convert("RGB"), dtype=np.int16)
    return np.array([pixels[PATCH, index * PATCH + PATCH // 2] for index in range(count)])


@contextlib.contextmanager
def _first_frame(path):
    with av.open(str(path)) as container:
        yield next(container.decode(container.streams.video[0]))


def _frame_of(tmp_path, data: bytes):
    """The clip's file, and its first frame turned into sRGB by the video library's colour management, and read
    as if it were an SDR video."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    with _first_frame(path) as frame:
        managed = frame.reformat(format="rgb24", dst_color_trc=ColorTrc.IEC61966_2_1,
                                 dst_color_primaries=ColorPrimaries.BT709).to_image()
        plain = frame.reformat(format="rgb24", src_color_range=frame.color_range).to_image()
    return path, managed, plain


@pytest.mark.parametrize("transfer", [HLG, PQ])
def test_hdr_frames_come_out_in_sdr_as_the_video_librarys_colour_management_makes_them(tmp_path, transfer):
    greys = GREYS[transfer]
    levels = greys + [RED[transfer]]
    path, managed, plain = _frame_of(tmp_path, hdr_video_bytes(_patches(levels), transfer))
    taken = extract_frames(path, tmp_path / "out", QuietReporter(), "clip.mp4", "clip", 60, 10**8)
    assert taken.hdr and len(taken.frames) == 1
    with Image.open(taken.frames[0].path) as picture:
        ours = _centres(picture, len(levels))
    theirs, before = _centres(managed, len(levels)), _centres(plain, len(levels))
    assert np.abs(ours[:len(greys)] - theirs[:len(greys)]).max() <= 4, (ours, theirs)  # JPEG adds a level or two
    red, their_red, plain_red = ours[-1], theirs[-1], before[-1]
    assert red[0] > 2.5 * max(red[1], red[2])  # a red, as saturated as it was recorded
    assert np.abs(red - their_red).max() <= 12, (red, their_red)
    assert (red[0] - red[1]) > 1.5 * (plain_red[0] - plain_red[1])  # read as an SDR video it was washed out
    assert not np.allclose(ours[:len(greys)], before[:len(greys)], atol=8)  # and its greys were not these


def test_highlights_above_the_reference_white_keep_their_shape_instead_of_going_flat_white(tmp_path):
    path, managed, _ = _frame_of(tmp_path, hdr_video_bytes(_patches([0.75] + HIGHLIGHTS), HLG))
    with _first_frame(path) as frame:
        ours = _centres(sdr_picture(frame), 4)[:, 0]
    theirs = _centres(managed, 4)[:, 0]
    assert list(theirs) == [255] * 4  # clipped: a cloud is a white blot
    assert 235 <= ours[0] < ours[1] < ours[2] < ours[3] and ours[3] >= 253, ours  # white, then brighter still


def test_an_hdr_phone_clip_imports_as_sdr_frames_and_the_import_says_it_was_hdr(client, dataset_id, studio_root):
    signal = _patches(GREYS[HLG] + [RED[HLG]])
    job = upload(client, dataset_id, [("sunset.mp4", hdr_video_bytes(signal, HLG, frames=25))])
    assert job["status"] == "completed", job
    assert job["result"]["videos"] == [{"file": "sunset.mp4", "seconds": 2.5, "frames": 1, "alike": 0,
                                        "hdr": True}]
    (name,) = job["result"]["imported"]
    with Image.open(studio_root / "datasets" / dataset_id / name) as picture:
        red = _centres(picture, len(GREYS[HLG]) + 1)[-1]
    assert red[0] > 2.5 * max(red[1], red[2])


def test_hlg_recorded_in_bt709_is_not_oversaturated_and_a_clip_without_its_matrix_reads_as_bt2020(tmp_path):
    levels = GREYS[HLG] + [RED[HLG]]
    signal = _patches(levels)
    path, managed, _ = _frame_of(tmp_path, hdr_video_bytes(signal, HLG, primaries="bt709", matrix="bt709"))
    with _first_frame(path) as frame:
        assert (frame.color_primaries, frame.colorspace) == (1, 1)
        ours = _centres(sdr_picture(frame), len(levels))
    theirs = _centres(managed, len(levels))
    assert np.abs(ours[:-1] - theirs[:-1]).max() <= 4, (ours, theirs)
    assert np.abs(ours[-1] - theirs[-1]).max() <= 12, (ours, theirs)  # read as BT.2020: (203, 60, 63)

    tagged = _centres(_sdr_of(tmp_path / "tagged", hdr_video_bytes(signal, HLG)), len(levels))
    untagged_path = tmp_path / "untagged"
    untagged = _centres(_sdr_of(untagged_path, hdr_video_bytes(signal, HLG, matrix=None)), len(levels))
    assert np.abs(tagged - untagged).max() <= 2, (tagged, untagged)


def _sdr_of(folder, data: bytes):
    folder.mkdir()
    path, _, _ = _frame_of(folder, data)
    with _first_frame(path) as frame:
        return sdr_picture(frame)
