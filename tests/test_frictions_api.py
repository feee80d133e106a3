"""Server side of the new-user frictions: the favicon on every service, exports that leave exact
duplicates out, how small a flagged image is, the trainer's small-image warning, free LoRA names and
plural-correct messages."""

from __future__ import annotations

import io

import pytest
from PIL import Image

import app as datasets_app
import caption_service
import trainer
from studio.text import name_list, plural
from studio.workspace import Workspace
from tests.test_datasets_support import image_bytes, upload, wait_job
from tests.test_trainer_worker import TINY_CONFIG, make_export
from trainer.names import slug, unique_name

PASSWORD = "s3cret pass"


@pytest.fixture
def datasets(make_settings):
    return datasets_app.create_app(make_settings()).test_client()


def _dataset_with_copies(client) -> str:
    """Five distinct images, two exact copies of the first, one small image (320x240)."""
    dataset_id = client.post("/api/datasets", json={"name": "My cat", "trigger_word": "mycat"}).get_json()["id"]
    files = [(f"cat{i}.png", image_bytes(i, size=(640, 640))) for i in range(5)]
    files += [("copy-a.png", image_bytes(0, size=(640, 640))), ("copy-b.png", image_bytes(0, size=(640, 640))),
              ("tiny.png", image_bytes(42, size=(320, 240)))]
    upload(client, dataset_id, files)
    return dataset_id


def _export(client, dataset_id: str, **body) -> dict:
    response = client.post(f"/api/datasets/{dataset_id}/export", json={"name": "my-cat", **body})
    assert response.status_code == 202, response.get_json()
    return wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")


def test_favicon_is_served_by_every_service_without_a_password(make_settings, demo_root):
    settings = make_settings(STUDIO_PASSWORD=PASSWORD, STUDIO_DEMO=1)
    caption = caption_service.create_app(settings)
    try:
        for app in (datasets_app.create_app(settings), trainer.create_app(settings), caption):
            client = app.test_client()
            response = client.get("/favicon.ico")
            assert response.status_code == 200 and response.mimetype == "image/vnd.microsoft.icon"
            assert "max-age" in response.headers["Cache-Control"]
            with Image.open(io.BytesIO(response.data)) as icon:
                assert icon.format == "ICO" and icon.size[0] >= 16
            # the rest stays behind the password
            assert client.get("/api/jobs", headers={"Accept": "application/json"}).status_code in (401, 404)
    finally:
        caption.extensions["caption_models"].close()


def test_pages_link_the_favicon_and_the_express_page(make_settings):
    client = datasets_app.create_app(make_settings()).test_client()
    page = client.get("/").get_data(as_text=True)
    assert '<link rel="icon" href="/favicon.ico"' in page
    assert 'data-path="express" href="/express"' in page
    trainer_page = trainer.create_app(make_settings()).test_client().get("/").get_data(as_text=True)
    assert 'data-path="express"' in trainer_page


def test_export_leaves_exact_duplicates_out_by_default(datasets, studio_root):
    dataset_id = _dataset_with_copies(datasets)
    summary = datasets.get(f"/api/datasets/{dataset_id}").get_json()
    assert summary["flag_counts"]["duplicates"] == 2
    job = _export(datasets, dataset_id)
    assert job["status"] == "completed", job
    assert job["result"]["left_out"] == ["copy-a.png", "copy-b.png"] and job["result"]["images"] == 6
    assert job["message"].endswith("; left out 2 exact duplicates (copy-a.png, copy-b.png).")
    folder = Workspace(studio_root).export_dir("my-cat")
    assert not (folder / "copy-a.png").exists() and (folder / "cat0.png").is_file()
    assert datasets.get(f"/api/datasets/{dataset_id}").get_json()["last_export"]["left_out"] == 2

    kept = _export(datasets, dataset_id, include_duplicates=True)
    assert kept["result"]["left_out"] == [] and kept["result"]["images"] == 8
    folder = Workspace(studio_root).export_dir("my-cat")  # the name points at the new version now
    assert "left out" not in kept["message"] and (folder / "copy-a.png").is_file()
    assert kept["result"]["version"] != job["result"]["version"]


def test_export_option_must_be_a_boolean(datasets):
    dataset_id = _dataset_with_copies(datasets)
    response = datasets.post(f"/api/datasets/{dataset_id}/export", json={"include_duplicates": "yes"})
    assert response.status_code == 422 and "include_duplicates" in response.get_json()["error"]


def test_one_image_export_message_is_singular(datasets):
    dataset_id = datasets.post("/api/datasets", json={"name": "One"}).get_json()["id"]
    upload(datasets, dataset_id, [("only.png", image_bytes(3, size=(600, 600)))])
    job = _export(datasets, dataset_id)
    assert job["message"].startswith("Exported 1 image to trainer/datasets/my-cat ")


def test_small_flag_says_how_small(datasets):
    dataset_id = _dataset_with_copies(datasets)
    images = datasets.get(f"/api/datasets/{dataset_id}/images?filter=small").get_json()["images"]
    assert [i["name"] for i in images] == ["tiny.png"]
    assert images[0]["flags"]["small"] == {"width": 320, "height": 240, "min_side": 512}


def test_validation_names_the_small_images_and_what_happens(trainer_app, trainer_client):
    app, client = trainer_app, trainer_client
    folder = make_export(app.config["STUDIO_SETTINGS"].root, "tiny-set", count=4)  # 64x64 px each
    Image.new("RGB", (40, 24)).save(folder / "img9.png")
    (folder / "img9.txt").write_text("tok")

    def warning(resolutions):
        body = {"dataset": "tiny-set", "config": {**TINY_CONFIG, "resolutions": resolutions}}
        report = client.post("/api/jobs/validate", json=body).get_json()
        return report, next(w["message"] for w in report["warnings"] if w["field"] == "resolutions")

    report, many = warning([128, 256])
    assert many == ("5 of 5 images are below the smallest training size of 128x128 px (smallest: img9.png, "
                    "40x24): they train once at their own size instead of at all 2 resolutions, never upscaled, so "
                    "replace or remove them for more detail.")
    assert report["estimate_device"] == "demo" and report["suggested_steps"] == 500
    _, one = warning([64])
    assert one == ("1 of 5 images is below the smallest training size of 64x64 px (img9.png, 40x24): it trains at "
                   "its own size, never upscaled, so replace or remove it for more detail.")


def test_the_estimate_counts_the_sizes_the_images_train_at(trainer_app, trainer_client):
    """64 px images train at 64 px whatever the resolutions say (never upscaled): so the estimate is the same."""
    app, client = trainer_app, trainer_client
    make_export(app.config["STUDIO_SETTINGS"].root, "tiny-set", count=4)  # 64x64 px each

    def estimate(resolutions):
        body = {"dataset": "tiny-set", "config": {**TINY_CONFIG, "resolutions": resolutions}}
        report = client.post("/api/jobs/validate", json=body).get_json()
        return report["estimated_duration_s"], report["estimated_memory_gb"]

    assert estimate([64, 512, 1024]) == estimate([64])


def test_lora_names_are_derived_and_unique(trainer_app, trainer_client):
    app, client = trainer_app, trainer_client
    workspace = app.config["STUDIO_WORKSPACE"]
    store = app.extensions["job_store"]
    assert client.get("/api/lora-names?for=my-cat").get_json()["suggested"] == "my-cat"
    store.create("train", name="first", recipe="zimage-turbo", config={**TINY_CONFIG, "name": "my-cat"},
                 dataset="my-cat", total=6)
    assert client.get("/api/lora-names?for=my-cat").get_json()["suggested"] == "my-cat-2"
    workspace.loras.mkdir(parents=True, exist_ok=True)
    (workspace.loras / "My-Cat-2.safetensors").write_bytes(b"x")  # names compare without case
    answer = client.get("/api/lora-names?for=my-cat").get_json()
    assert answer["suggested"] == "my-cat-3" and {"my-cat", "my-cat-2"} <= set(answer["taken"])
    assert client.get("/api/lora-names?for=" + "x" * 201).status_code == 400


def test_a_name_already_in_the_library_is_warned_about_with_a_free_one(trainer_app, trainer_client):
    app, client = trainer_app, trainer_client
    make_export(app.config["STUDIO_SETTINGS"].root, "tiny-set", count=2)
    loras = app.config["STUDIO_WORKSPACE"].loras
    loras.mkdir(parents=True, exist_ok=True)

    def name_warnings():
        body = {"dataset": "tiny-set", "config": {**TINY_CONFIG, "name": "my-cat"}}
        return [w["message"] for w in client.post("/api/jobs/validate", json=body).get_json()["warnings"]
                if w["field"] == "name"]

    assert name_warnings() == []
    (loras / "my-cat.safetensors").write_bytes(b"x")
    (loras / "my-cat-2.safetensors").write_bytes(b"x")
    assert name_warnings() == ["A LoRA named 'my-cat' is already in the library: this job's file will be kept "
                               "there as my-cat-<job id>.safetensors. 'my-cat-3' is free."]


def test_name_helpers():
    assert slug("My cat!") == "My-cat" and slug("__") == "lora" and slug("...a.b") == "a.b"
    assert len(unique_name("a" * 90, {"a" * 80})) == 80 and unique_name("a" * 90, {"a" * 80}).endswith("-2")
    assert plural(1, "image") == "1 image" and plural(2, "match", "matches") == "2 matches"
    assert name_list(["a", "b", "c", "d", "e"]) == "a, b, c and 2 more" and name_list(["a"]) == "a"


def test_a_job_that_would_fill_the_disk_is_warned_about(trainer_app, trainer_client, monkeypatch):
    from trainer import validation

    app, client = trainer_app, trainer_client
    make_export(app.config["STUDIO_SETTINGS"].root, "tiny-set", count=4)
    body = {"dataset": "tiny-set", "config": TINY_CONFIG}
    roomy = client.post("/api/jobs/validate", json=body).get_json()
    assert roomy["estimated_disk_gb"] > 0 and not [w for w in roomy["warnings"] if w["field"] == "keep_last"]
    monkeypatch.setattr(validation, "free_bytes", lambda root: 1000)
    tight = client.post("/api/jobs/validate", json=body).get_json()
    (warning,) = [w["message"] for w in tight["warnings"] if w["field"] == "keep_last"]
    assert warning.startswith("This job writes up to about 400 KB") and "has 1.0 KB free" in warning
    assert "keep fewer checkpoints" in warning and tight["ok"]  # a warning: the job can still start


def test_train_on_the_visible_part_says_when_no_image_has_transparency(trainer_app, trainer_client):
    folder = make_export(trainer_app.config["STUDIO_SETTINGS"].root, "tiny-set", count=2)
    body = {"dataset": "tiny-set", "config": {**TINY_CONFIG, "alpha_mask": True}}
    report = trainer_client.post("/api/jobs/validate", json=body).get_json()
    (warning,) = [w["message"] for w in report["warnings"] if w["field"] == "alpha_mask"]
    assert warning.startswith("Train on the visible part is on, but no image has transparency") and report["ok"]
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(folder / "cutout.png")
    report = trainer_client.post("/api/jobs/validate", json=body).get_json()
    assert not [w for w in report["warnings"] if w["field"] == "alpha_mask"]
