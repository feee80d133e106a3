"""A strip much longer than wide (a 100,000x1 scan line, a panorama of 20:1) trains centre-cropped to 4:1 instead of
in a bucket as long as itself (100,000x16: its encoding alone took more memory than the run), and the job's check
says so before anything is queued."""

from __future__ import annotations

from PIL import Image

from tests.test_trainer_worker import TINY_CONFIG, make_export
from trainer.buckets import MAX_ASPECT, bucket_for, example_buckets


def test_a_bucket_is_never_longer_than_four_to_one():
    assert bucket_for(100_000, 1, 1024) == (16, 16)
    assert bucket_for(8000, 100, 1024) == (400, 96)  # the strip's middle 400x100, never upscaled
    assert bucket_for(1024, 20_000, 1024) == (512, 2048)
    w, h = bucket_for(6000, 1000, 1024)
    assert w / h <= MAX_ASPECT + 0.2 and w * h <= 1024 * 1024
    # what people train on is as it was
    assert bucket_for(3000, 2000, 1024) == (1248, 832) and bucket_for(1024, 1024, 512) == (512, 512)
    assert example_buckets(4000, 1000, [512, 1024]) == [(1024, 256), (2048, 512)]


def test_the_check_names_the_strips(trainer_app, trainer_client):
    folder = make_export(trainer_app.config["STUDIO_SETTINGS"].root, "strips", count=3)
    Image.new("RGB", (2000, 100)).save(folder / "scan.png")
    (folder / "scan.txt").write_text("tok")
    report = trainer_client.post("/api/jobs/validate", json={"dataset": "strips", "config": TINY_CONFIG}).get_json()
    said = [w["message"] for w in report["warnings"] if "longer than 4:1" in w["message"]]
    assert said == ["1 image is longer than 4:1 (scan.png, 2000x100): it trains centre-cropped to 4:1; crop it "
                    "yourself to choose what stays."]
