"""Frames from a video: a phone clip becomes dataset images, the sharpest frame of each stretch, upright as the
phone was held, captioned by a caption file named like the video; a still scene gives one frame, not many; a
Live Photo's moving part is left out for its photo; a limit spreads its frames over the whole video; a damaged
or oversized video gets a sentence and loses nothing else. Real H.264 videos, decoded for real."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

import app as datasets_app
from app.video_frames import Unreadable, extract_frames
from studio.job_reporter import QuietReporter
from tests import test_datasets_support as support
from tests.test_datasets_image_formats import heic_photo
from tests.test_datasets_support import image_bytes, upload, zip_bytes
from tests.videos import scene, video_bytes

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def _images(client, dataset_id) -> dict[str, dict]:
    return {i["name"]: i for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}


def _like(path: Path, picture: Image.Image) -> float:
    """Mean absolute difference per channel (0-255) between a file and a picture of the same size."""
    with Image.open(path) as image:
        return float(np.abs(np.asarray(image.convert("RGB"), dtype=np.int16)
                            - np.asarray(picture.convert("RGB"), dtype=np.int16)).mean())


def test_a_phone_clip_gives_the_sharpest_frame_of_each_stretch_upright_with_its_caption(client, dataset_id,
                                                                                       studio_root):
    clip = video_bytes([1, 2, 3], turned=True)  # 6 s, one scene each 2 s, each sharp at 0.7 s only
    job = upload(client, dataset_id, [("dog.mp4", clip), ("dog.txt", b"my dog on the beach")])
    assert job["status"] == "completed", job
    names = ["dog-00m00.7s.jpg", "dog-00m02.7s.jpg", "dog-00m04.7s.jpg"]
    assert job["result"]["imported"] == names
    assert job["result"]["videos"] == [{"file": "dog.mp4", "seconds": 6.0, "frames": 3, "alike": 0, "hdr": False}]
    assert "3 frames from 1 video" in job["message"]
    rows = _images(client, dataset_id)
    for seed, name in zip([1, 2, 3], names, strict=True):
        assert (rows[name]["width"], rows[name]["height"]) == (96, 160)  # held upright: a portrait
        assert rows[name]["caption"] == "my dog on the beach"
        assert not rows[name]["flags"].get("soft")  # the sharp frame, not a blurred one
        sharp = scene(seed).rotate(-90, expand=True)  # turned a quarter clockwise, as shown
        blurred = sharp.filter(ImageFilter.GaussianBlur(3))
        path = studio_root / "datasets" / dataset_id / name
        assert _like(path, sharp) < 0.6 * _like(path, blurred), name  # that scene, its sharp frame


def test_a_still_scene_gives_one_frame_and_a_limit_spreads_over_the_whole_video(tmp_path):
    still = tmp_path / "still.mp4"
    still.write_bytes(video_bytes([5, 5, 5]))
    reports: list[dict] = []
    taken = extract_frames(still, tmp_path / "a", QuietReporter(reports.append), "still.mp4", "still", 60, 10**8)
    assert [f.name for f in taken.frames] == ["still-00m00.7s.jpg"] and taken.alike == 2
    assert reports[0] == {"phase": "frames", "done": 0, "total": 6,
                          "message": "Taking frames from still.mp4: 0:00 of 0:06"}

    long = tmp_path / "long.mp4"
    long.write_bytes(video_bytes([1, 2, 3, 4, 5, 6]))  # 12 s: six stretches of 2 s
    taken = extract_frames(long, tmp_path / "b", QuietReporter(), "long.mp4", "long", 60, 10**8, limit=2)
    assert taken.left == 4 and len(taken.frames) == 2
    assert taken.frames[0].time < 6 <= taken.frames[1].time  # one in each half, not the first two stretches
    taken = extract_frames(long, tmp_path / "c", QuietReporter(), "long.mp4", "long", 3, 10**8)  # VIDEO_MAX_FRAMES
    assert len(taken.frames) == 3 and taken.left == 0


def test_a_live_photo_keeps_its_photo_and_a_zip_of_clips_gives_their_frames(client, dataset_id):
    archive = zip_bytes([("phone/IMG_0001.heic", heic_photo()), ("phone/IMG_0001.mov", video_bytes([7])),
                         ("phone/clips/cat.mp4", video_bytes([8, 9])), ("phone/clips/cat.txt", b"a grey cat")])
    job = upload(client, dataset_id, [("phone.zip", archive)])
    assert job["status"] == "completed", job
    assert sorted(job["result"]["imported"]) == ["IMG_0001.heic", "cat-00m00.7s.jpg", "cat-00m02.7s.jpg"]
    [skipped] = job["result"]["skipped"]
    assert skipped["name"] == "phone.zip/phone/IMG_0001.mov" and "Live Photo" in skipped["reason"]
    rows = _images(client, dataset_id)
    assert rows["cat-00m00.7s.jpg"]["caption"] == "a grey cat" and rows["IMG_0001.heic"]["caption"] == ""


def test_a_damaged_or_oversized_video_gets_a_sentence_and_loses_nothing_else(client, dataset_id, make_settings):
    broken = b"\x00\x00\x00\x18ftypisom" + b"\x13\x37" * 2000
    job = upload(client, dataset_id, [("broken.mp4", broken)])
    assert job["status"] == "failed" and "broken.mp4 cannot be read as a video" in job["error"], job
    job = upload(client, dataset_id, [("broken.mp4", broken), ("a.png", image_bytes(1, size=(96, 96)))])
    assert job["status"] == "completed" and job["result"]["imported"] == ["a.png"], job
    assert "cannot be read" not in job["message"] and job["result"]["skipped"][0]["name"] == "broken.mp4"
    assert "damaged or not a video" in job["result"]["skipped"][0]["reason"]
    archive = zip_bytes([("set/a.png", image_bytes(2, size=(96, 96))), ("set/broken.mp4", broken)])
    job = upload(client, dataset_id, [("set.zip", archive)])  # one file, but the video is not all it holds
    assert job["status"] == "completed" and job["result"]["imported"] == ["a_2.png"], job

    small = datasets_app.create_app(make_settings(MAX_IMAGE_PIXELS="10000")).test_client()
    other = small.post("/api/datasets", json={"name": "Small"}).get_json()["id"]
    job = upload(small, other, [("big.mp4", video_bytes([1])), ("a.png", image_bytes(1))])
    assert job["status"] == "completed" and job["result"]["imported"] == ["a.png"], job
    assert "160x96 pixels, over the limit of 10,000" in job["result"]["skipped"][0]["reason"]


def test_a_file_that_is_not_a_video_is_unreadable(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_bytes(b"just some notes, not a video at all\n" * 10)
    with pytest.raises(Unreadable) as caught:
        extract_frames(text, tmp_path / "s", QuietReporter(), "notes.mp4", "notes", 60, 10**8)
    assert "notes.mp4 cannot be read as a video" in str(caught.value)


def test_a_long_video_is_read_by_its_keyframes(tmp_path, monkeypatch):
    from app import video_frames

    monkeypatch.setattr(video_frames, "LONG_VIDEO_S", 1.0)  # as if the 12 s were over three minutes
    clip = tmp_path / "long.mp4"
    clip.write_bytes(video_bytes([1, 2, 3, 4, 5, 6]))
    taken = extract_frames(clip, tmp_path / "k", QuietReporter(), "long.mp4", "long", 60, 10**8)
    # the encoder starts a keyframe at each new scene: only those are decoded, one a stretch
    assert [f.time for f in taken.frames] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_a_video_longer_than_a_film_is_refused_with_a_sentence(tmp_path, monkeypatch):
    from app import video_frames

    monkeypatch.setattr(video_frames, "MAX_VIDEO_S", 3)
    clip = tmp_path / "film.mp4"
    clip.write_bytes(video_bytes([1, 2]))
    with pytest.raises(Unreadable, match="it lasts 0:04, more than 0:03: cut out the part you want first"):
        extract_frames(clip, tmp_path / "s", QuietReporter(), "film.mp4", "film", 60, 10**8)
    assert video_frames.clock(7325) == "2:02:05" and video_frames.clock(65.9) == "1:05"


def test_damaged_videos_give_frames_or_a_sentence_never_a_crash(tmp_path):
    """Bytes changed or cut at random in real videos: each gives the frames it can, or Unreadable."""
    import random

    rng = random.Random(2)
    originals = [video_bytes([1, 2]), video_bytes([3], turned=True)]
    outcomes = {"frames": 0, "unreadable": 0}
    for attempt in range(150):
        data = bytearray(rng.choice(originals))
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 30)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data = data[:rng.randrange(len(data))]
        clip = tmp_path / f"{attempt}.mp4"
        clip.write_bytes(bytes(data))
        try:
            extract_frames(clip, tmp_path / f"s{attempt}", QuietReporter(), clip.name, "f", 60, 10**8)
            outcomes["frames"] += 1
        except Unreadable as exc:
            assert exc.reason and f"{clip.name} cannot be read as a video" in str(exc)
            outcomes["unreadable"] += 1
    assert outcomes["frames"] and outcomes["unreadable"]


def test_a_shorter_stretch_gives_more_frames(make_settings):
    clip = video_bytes([1, 2, 3, 4], seconds_each=1.0, sharp_at=3)  # a new scene every second
    for seconds, frames in (("2", 2), ("1", 4)):
        client = datasets_app.create_app(make_settings(VIDEO_FRAME_SECONDS=seconds)).test_client()
        dataset_id = client.post("/api/datasets", json={"name": "More"}).get_json()["id"]
        job = upload(client, dataset_id, [("run.mp4", clip)])
        assert job["status"] == "completed" and job["result"]["videos"][0]["frames"] == frames, (seconds, job)


def test_an_upload_chooses_its_frames_and_an_import_cut_short_keeps_the_choice(client, dataset_id, studio_root):
    clip = video_bytes([1, 2, 3, 4], seconds_each=1.0, sharp_at=3)  # a new scene every second
    data = {"files": [(io.BytesIO(clip), "run.mp4")], "frame_seconds": "1", "max_frames": "3"}
    response = client.post(f"/api/datasets/{dataset_id}/upload?wait=20", data=data,
                           content_type="multipart/form-data")
    job = response.get_json()
    assert job["status"] == "completed" and job["result"]["videos"][0]["frames"] == 3, job  # 4 s, at most 3
    # an upload in pieces: the choice goes with the import, and "Import the rest" keeps it
    session = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "walk.mp4", "size": len(clip)})
    sid = session.get_json()["id"]
    assert client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=clip).status_code == 200
    started = client.post(f"/api/datasets/{dataset_id}/imports", json={"sessions": [sid], "frame_seconds": 1})
    assert started.status_code == 202, started.get_json()
    assert started.get_json()["config"]["frames"] == {"frame_seconds": 1.0}
    done = support.wait_job(client, f"/api/datasets/{dataset_id}/imports/{started.get_json()['id']}")
    assert done["result"]["videos"][0]["frames"] == 4  # one a second; the pod's setting gives 2


@pytest.mark.parametrize("form", [{"frame_seconds": "0"}, {"frame_seconds": "fast"}, {"frame_seconds": "nan"},
                                  {"max_frames": "2.5"}, {"max_frames": "0"}, {"max_frames": "100000"}])
def test_a_frame_choice_out_of_range_is_refused_with_a_sentence_before_anything_is_kept(client, dataset_id,
                                                                                       studio_root, form):
    data = {"files": [(io.BytesIO(video_bytes([1])), "run.mp4")], **form}
    response = client.post(f"/api/datasets/{dataset_id}/upload", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error.startswith("'frame_seconds' must be" if "frame_seconds" in form else "'max_frames' must be"), error
    assert not list((studio_root / "uploads").glob("batch-*"))  # nothing written before the refusal
    refused = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": "https://example.com/a.mp4", **form})
    assert refused.status_code == 422


def test_a_long_video_with_keyframes_far_apart_still_gives_a_frame_a_stretch(tmp_path, monkeypatch):
    """A screen recording's keyframes can be 10 s or more apart: read by its keyframes alone, a long one gave a
    frame for one stretch in five. The stretches no keyframe falls in are sought, and give their sharpest frame."""
    import io

    import av
    from PIL import ImageFilter

    from app import video_frames
    from tests.videos import scene

    monkeypatch.setattr(video_frames, "LONG_VIDEO_S", 1.0)  # as if the 12 s were over three minutes
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:  # a keyframe every 6 s, none at a new scene
        stream = out.add_stream("libx264", rate=10, options={"crf": "12", "g": "60", "keyint_min": "60",
                                                             "sc_threshold": "0", "x264-params": "scenecut=0"})
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for seed in range(6):
            sharp = scene(seed)
            for index in range(20):
                picture = sharp if index == 7 else sharp.filter(ImageFilter.GaussianBlur(3))
                for packet in stream.encode(av.VideoFrame.from_image(picture)):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    clip = tmp_path / "screen.mp4"
    clip.write_bytes(buffer.getvalue())
    taken = extract_frames(clip, tmp_path / "k", QuietReporter(), "screen.mp4", "screen", 60, 10**8)
    # the keyframes at 0 s and 6 s, and the sharp frame of each stretch between them
    assert [round(f.time, 1) for f in taken.frames] == [0.0, 2.7, 4.7, 6.0, 8.7, 10.7]
