"""Soft images: out-of-focus, blurred and upscaled pictures are flagged in the gallery, sharp ones (a small
sharp subject before a blurred background included, dark or low-contrast ones too) are not, and the flag
is a filter, a count and a one-click removal to the trash like the other flags."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from app import measure
from app.sharpness import SOFT_BELOW, sharpness, soft_flag
from tests import test_datasets_support as support
from tests.test_datasets_support import upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def drawing(size=(768, 768), seed=0) -> Image.Image:
    """Shapes and lines with hard edges, like a photo's in-focus detail or an illustration's outlines."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (200, 190, 170))
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y = (int(v) for v in rng.integers(0, size[0], 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        draw.rectangle((x, y, x + int(rng.integers(8, 90)), y + int(rng.integers(8, 90))), outline=colour, width=2)
        draw.line((x, y, int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))), fill=colour, width=1)
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_sharp_pictures_pass_and_soft_ones_are_flagged():
    sharp = drawing()
    assert sharpness(sharp) > 5 * SOFT_BELOW
    assert sharpness(sharp.filter(ImageFilter.GaussianBlur(2))) < SOFT_BELOW  # out of focus
    tiny = sharp.resize((128, 128), Image.Resampling.LANCZOS)
    assert sharpness(tiny.resize((768, 768), Image.Resampling.BICUBIC)) < SOFT_BELOW  # upscaled
    dark = sharp.point(lambda v: v // 5)  # the score is relative to the picture's own contrast
    assert sharpness(dark) > 5 * SOFT_BELOW
    bokeh = sharp.filter(ImageFilter.GaussianBlur(4))
    bokeh.paste(sharp.crop((300, 300, 400, 400)), (300, 300))  # a subject a seventh of the width
    assert sharpness(bokeh) > SOFT_BELOW
    big = drawing((2400, 1600))  # judged at the size it trains at
    assert sharpness(big) > SOFT_BELOW
    assert sharpness(Image.new("RGB", (600, 400), (90, 90, 90))) is None  # nothing to judge: no flag
    assert sharpness(Image.new("RGB", (20, 20))) is None
    assert soft_flag(None) is None and soft_flag(1.0) is None
    assert soft_flag(0.02) == {"sharpness": 0.02, "below": SOFT_BELOW}


def test_soft_images_are_flagged_filtered_counted_and_removed_in_one_click(client, dataset_id):
    sharp = drawing(seed=1)
    upload(client, dataset_id, [("sharp.png", _png(sharp)),
                                ("blurred.png", _png(drawing(seed=2).filter(ImageFilter.GaussianBlur(3)))),
                                ("blurred.txt", b"a soft picture")])
    images = {i["name"]: i for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    assert "soft" not in images["sharp.png"]["flags"]
    assert images["blurred.png"]["flags"]["soft"]["below"] == SOFT_BELOW
    listed = client.get(f"/api/datasets/{dataset_id}/images?filter=soft").get_json()
    assert [i["name"] for i in listed["images"]] == ["blurred.png"]
    summary = client.get(f"/api/datasets/{dataset_id}").get_json()
    assert summary["flag_counts"]["soft"] == 1 and summary["flagged"] == 1

    # an edit measures the new picture again
    row = client.post(f"/api/datasets/{dataset_id}/images/blurred.png/edit", json={"op": "rotate", "degrees": 90})
    assert row.get_json()["flags"]["soft"]

    removed = client.post(f"/api/datasets/{dataset_id}/images/remove-flagged", json={"kind": "soft"}).get_json()
    assert removed["deleted"] == ["blurred.png"]
    restored = client.post(f"/api/datasets/{dataset_id}/trash/{removed['trash']}/restore").get_json()
    assert restored["restored"] == ["blurred.png"]
    back = client.get(f"/api/datasets/{dataset_id}/images?filter=soft").get_json()["images"]
    assert [i["name"] for i in back] == ["blurred.png"] and back[0]["caption"] == "a soft picture"
    refused = client.post(f"/api/datasets/{dataset_id}/images/remove-flagged", json={"kind": "blurry"})
    assert refused.status_code == 422 and "'soft'" in refused.get_json()["error"]


def test_images_recorded_before_the_check_are_measured_once_after_a_start(client, dataset_id, ds_app, settings):
    soft = drawing(seed=3).filter(ImageFilter.GaussianBlur(3))
    upload(client, dataset_id, [("old.png", _png(soft)), ("sharp.png", _png(drawing(seed=4))),
                                ("broken.png", _png(drawing(seed=5))), ("changed.png", _png(soft.rotate(90)))])
    store = ds_app.extensions["dataset_store"]
    dataset = store.get(dataset_id)
    with dataset.lock():  # as an older studio recorded them
        meta = dataset.meta()
        for record in meta["images"].values():
            record.pop("sharpness")
        meta["images"]["changed.png"]["sha256"] = "0" * 64  # replaced on disk since
        support.datasets_app.store.refresh_flags(meta)
        dataset.save_meta(meta)
    (dataset.folder / "broken.png").write_bytes(b"not a png")
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["flag_counts"]["soft"] == 0

    assert measure.measure_missing(store, settings.max_image_pixels) == 4
    records = dataset.meta()["images"]
    assert records["old.png"]["flags"]["soft"] and records["sharp.png"]["sharpness"] > SOFT_BELOW
    assert records["broken.png"]["sharpness"] is None  # measured: not tried again at every start
    assert "sharpness" not in records["changed.png"]  # not the file that was measured
    assert measure.measure_missing(store, settings.max_image_pixels) == 1  # only the one left
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["flag_counts"]["soft"] == 1


def test_the_trainer_warns_of_the_soft_images_an_export_holds(make_settings):
    import trainer
    from tests.test_datasets_support import wait_job

    settings = make_settings(STUDIO_DEMO=1)
    datasets = support.datasets_app.create_app(settings).test_client()
    jobs = trainer.create_app(settings).test_client()
    dataset_id = datasets.post("/api/datasets", json={"name": "Mixed"}).get_json()["id"]
    upload(datasets, dataset_id, [("a.png", _png(drawing(seed=6))), ("b.png", _png(drawing(seed=7))),
                                  ("c.png", _png(drawing(seed=8).filter(ImageFilter.GaussianBlur(3))))])
    assert datasets.post(f"/api/datasets/{dataset_id}/export", json={"name": "mixed"}).status_code == 202
    assert wait_job(datasets, f"/api/datasets/{dataset_id}/export", key="job")["status"] == "completed"
    report = jobs.post("/api/jobs/validate", json={"name": "m", "dataset": "mixed", "config": {"steps": 6}}).get_json()
    warnings = [w["message"] for w in report["warnings"]]
    soft = "1 image looks soft (out of focus, blurred or upscaled: c.png)"
    assert any(w.startswith(soft) for w in warnings), warnings


def test_the_gallery_orders_by_name_newest_softest_or_smallest(client, dataset_id):
    upload(client, dataset_id, [("b sharp.png", _png(drawing(seed=9)))])
    upload(client, dataset_id, [("a soft.png", _png(drawing(seed=10).filter(ImageFilter.GaussianBlur(3))))])
    upload(client, dataset_id, [("c small.png", _png(drawing(size=(300, 200), seed=11)))])

    def order(sort):
        return [i["name"] for i in client.get(f"/api/datasets/{dataset_id}/images?sort={sort}").get_json()["images"]]

    assert order("name") == ["a soft.png", "b sharp.png", "c small.png"]
    assert order("newest") == ["c small.png", "a soft.png", "b sharp.png"]
    assert order("softest")[0] == "a soft.png"
    assert order("smallest")[0] == "c small.png"
    refused = client.get(f"/api/datasets/{dataset_id}/images?sort=random")
    assert refused.status_code == 400 and "name, newest, softest, smallest" in refused.get_json()["error"]
