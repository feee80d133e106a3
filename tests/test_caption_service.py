"""The caption service's HTTP API on the real llama-cpp-python with the tiny Qwen2.5-VL pair."""

from __future__ import annotations

import base64
import io
import threading
import time

import pytest
from PIL import Image, ImageDraw

import caption_service
from caption_service import model_manager
from caption_service.llm import build_llama
from caption_service.model_manager import ModelManager

HEALTH_KEYS = {"status", "reason", "model", "mmproj", "device", "load_seconds", "queue"}


def png_bytes(size=(64, 48), color=(30, 120, 200), mode="RGB", fmt="PNG", **save) -> bytes:
    image = Image.new(mode, size, color)
    if mode == "RGB" and min(size) > 8:
        ImageDraw.Draw(image).rectangle((4, 4, size[0] // 2, size[1] // 2), fill=(220, 30, 30))
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wait_status(client, wanted: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = client.get("/health").get_json()
        if health["status"] == wanted:
            return health
        time.sleep(0.02)
    raise AssertionError(f"status never became {wanted!r}: {health}")


@pytest.fixture
def make_app(make_settings, demo_root):
    """make_app(**env) -> a caption app on the demo models, its model loaded; closed after the test."""
    apps = []

    def make(wait: str | None = "ready", **env):
        env.setdefault("STUDIO_DEMO", 1)
        env.setdefault("CAPTION_IDLE_UNLOAD_S", 0)
        app = caption_service.create_app(make_settings(**env))
        apps.append(app)
        if wait:
            wait_status(app.test_client(), wait)
        return app

    yield make
    for app in apps:
        app.extensions["caption_models"].close()


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def caption(client, image: bytes | str, **fields):
    fields.setdefault("max_tokens", 8)
    return client.post("/caption", json={"image": image if isinstance(image, str) else b64(image), **fields})


def test_health_when_ready(client):
    health = client.get("/health").get_json()
    assert set(health) == HEALTH_KEYS
    assert health["status"] == "ready" and health["reason"] is None
    assert health["model"] == "Qwen2.5-VL-7B-Instruct-Q8_0.gguf"
    assert health["mmproj"] == "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf"
    assert health["device"] == "cpu" and health["queue"] == 0
    assert isinstance(health["load_seconds"], float)


@pytest.mark.parametrize("style", ["detailed", "short", "tags"])
def test_caption_json_styles(client, style):
    response = caption(client, png_bytes(), style=style)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["caption"].strip() and "<|" not in body["caption"]
    assert body["tokens"] == 8  # the tiny model never stops by itself
    assert body["seconds"] >= 0 and body["style"] == style


def test_caption_is_deterministic_and_depends_on_the_image(client):
    first = caption(client, png_bytes(), max_tokens=12).get_json()["caption"]
    again = caption(client, png_bytes(), max_tokens=12).get_json()["caption"]
    other = caption(client, png_bytes(color=(250, 250, 10)), max_tokens=12).get_json()["caption"]
    assert first == again and first != other


def test_caption_multipart_with_trigger_word(client):
    data = {"file": (io.BytesIO(png_bytes()), "cat.png"), "style": "short", "trigger_word": "ohwx",
            "max_tokens": "6"}
    response = client.post("/caption", data=data, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["caption"].startswith("ohwx, ") and body["tokens"] == 6


def test_data_uri_and_any_format(client):
    uri = "data:image/png;base64," + b64(png_bytes())
    assert caption(client, uri).status_code == 200
    for data in (png_bytes(fmt="WEBP"), png_bytes(mode="RGBA", color=(1, 2, 3, 0)),
                 png_bytes(mode="I;16", color=40000), png_bytes(mode="CMYK", color=(0, 80, 80, 0), fmt="JPEG"),
                 png_bytes(size=(3, 2), fmt="GIF")):
        response = caption(client, data)
        assert response.status_code == 200, response.get_json()


def test_custom_style_and_extra_instructions(client):
    assert caption(client, png_bytes(), style="custom", prompt="Name the colours.").status_code == 200
    assert caption(client, png_bytes(), style="short", prompt="Mention the red square.").status_code == 200
    missing = caption(client, png_bytes(), style="custom")
    assert missing.status_code == 422 and "custom style needs a prompt" in missing.get_json()["error"]


def test_unknown_style_is_422(client):
    response = caption(client, png_bytes(), style="poem")
    assert response.status_code == 422
    assert "Unknown style 'poem'" in response.get_json()["error"]


def _truncated_png() -> bytes:
    data = png_bytes(size=(200, 200))
    noisy = Image.effect_noise((200, 200), 60).convert("RGB")
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    data = buf.getvalue()
    return data[: len(data) // 2]


def _wide_png() -> bytes:
    return png_bytes(size=(50_000, 1))  # a 50,000-pixel-wide image, a few hundred bytes


@pytest.mark.parametrize("data,message", [
    (b"this is not an image", "not an image"),
    (_truncated_png(), "truncated or corrupt"),
    (b"", "empty (0 bytes)"),
    (_wide_png(), "50000x1 pixels"),
])
def test_bad_images_are_422(client, data, message):
    response = caption(client, data)
    assert response.status_code == 422
    assert message in response.get_json()["error"]
    multipart = client.post("/caption", data={"file": (io.BytesIO(data), "x.png")},
                            content_type="multipart/form-data")
    assert multipart.status_code == 422 and message in multipart.get_json()["error"]


@pytest.mark.parametrize("body", [
    {"image": "https://example.com/cat.jpg"},
    {"image": "file:///etc/passwd"},
    {"image": "//example.com/cat.jpg"},
    {"url": "http://127.0.0.1/cat.jpg"},
    {"image_url": {"url": "http://127.0.0.1/cat.jpg"}},
])
def test_urls_are_refused_never_fetched(client, body):
    response = client.post("/caption", json=body)
    assert response.status_code == 422
    assert "never fetches URLs" in response.get_json()["error"]


@pytest.mark.parametrize("body,status,message", [
    ({"image": "%%% not base64 %%%"}, 422, "not valid base64"),
    ({"image": 12}, 422, "base64 string"),
    ({}, 422, "needs an image"),
    ({"image": "", "max_tokens": 0}, 422, "between 1 and"),
    ({"image": "", "max_tokens": "many"}, 422, "whole number"),
    ({"image": "", "trigger_word": ["x"]}, 422, "trigger_word must be a string"),
])
def test_malformed_fields(client, body, status, message):
    response = client.post("/caption", json=body)
    assert response.status_code == status and message in response.get_json()["error"]


def test_not_json_is_400(client):
    response = client.post("/caption", data="image=abc", content_type="text/plain")
    assert response.status_code == 400


def test_oversized_body_is_413(make_app):
    app = make_app()
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024 * 1024
    app.config["MAX_CONTENT_LENGTH"] = 4096  # the real limit, scaled down so the test stays small
    client = app.test_client()
    big = png_bytes(size=(200, 200), fmt="BMP")
    response = caption(client, big)
    assert response.status_code == 413 and "larger than" in response.get_json()["error"]
    multipart = client.post("/caption", data={"file": (io.BytesIO(big), "x.bmp")}, content_type="multipart/form-data")
    assert multipart.status_code == 413


def test_decompression_bomb_is_422(make_app):
    client = make_app(MAX_IMAGE_PIXELS=10_000).test_client()
    response = caption(client, png_bytes(size=(200, 200)))
    assert response.status_code == 422 and "more than the limit" in response.get_json()["error"]


def test_missing_model_reports_error_and_service_answers(make_app, studio_root):
    app = make_app(wait="error", STUDIO_DEMO=0)
    client = app.test_client()
    health = client.get("/health").get_json()
    model = studio_root / "models" / "Qwen2.5-VL-7B-Instruct-GGUF" / "Qwen2.5-VL-7B-Instruct-Q8_0.gguf"
    assert health["status"] == "error" and str(model) in health["reason"]
    assert "DEV_MODEL_PATH" in health["reason"] and "models.txt" in health["reason"]
    response = caption(client, png_bytes())
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert str(model) in response.get_json()["error"]
    assert client.get("/health").status_code == 200


def test_a_public_health_answer_names_the_missing_file_but_not_the_pods_folders(make_app, studio_root):
    client = make_app(wait="error", STUDIO_DEMO=0, STUDIO_PASSWORD="pw").test_client()
    anonymous = client.get("/health").get_json()["reason"]
    assert "Qwen2.5-VL-7B-Instruct-Q8_0.gguf" in anonymous and str(studio_root) not in anonymous
    assert "DEV_MODEL_PATH" in anonymous  # the rest of the sentence as it was (the log has the whole path)


def test_missing_model_says_it_is_downloading(make_app, monkeypatch):
    import studio.model_status

    def download_state(settings, key):
        return {"state": "downloading", "percent": 63.0, "message": "downloading, 63%"} if key == "caption" else None

    monkeypatch.setattr(studio.model_status, "download_state", download_state)
    health = make_app(wait="error", STUDIO_DEMO=0).test_client().get("/health").get_json()
    assert "is missing (downloading, 63%)" in health["reason"]


def test_model_arriving_later_is_loaded(make_app, demo_paths, tmp_path, monkeypatch):
    monkeypatch.setattr(model_manager, "ERROR_RETRY_S", 0.0)
    model, mmproj = tmp_path / "model.gguf", tmp_path / "mmproj.gguf"
    app = make_app(wait="error", STUDIO_DEMO=0, DEV_MODEL_PATH=model, DEV_MMPROJ_PATH=mmproj)
    client = app.test_client()
    assert str(model) in client.get("/health").get_json()["reason"]
    mmproj.write_bytes(demo_paths.caption_mmproj.read_bytes())
    model.write_bytes(demo_paths.caption_model.read_bytes())  # the download finished
    wait_status(client, "ready")
    assert caption(client, png_bytes()).status_code == 200


@pytest.mark.parametrize("broken", ["model", "mmproj"])
def test_corrupt_model_reports_error(make_app, demo_paths, tmp_path, broken):
    model, mmproj = tmp_path / "model.gguf", tmp_path / "mmproj.gguf"
    model.write_bytes(demo_paths.caption_model.read_bytes())
    mmproj.write_bytes(demo_paths.caption_mmproj.read_bytes())
    target = model if broken == "model" else mmproj
    target.write_bytes(target.read_bytes()[:50_000])  # an interrupted download
    app = make_app(wait="error", STUDIO_DEMO=0, DEV_MODEL_PATH=model, DEV_MMPROJ_PATH=mmproj)
    health = app.test_client().get("/health").get_json()
    assert str(target) in health["reason"] and "could not be loaded" in health["reason"]
    assert caption(app.test_client(), png_bytes()).status_code == 503


def test_unload_and_reload(client, monkeypatch):
    monkeypatch.setattr(model_manager, "LOAD_WAIT_S", 60.0)  # a busy test machine may load slowly; never a 503 here
    assert caption(client, png_bytes()).status_code == 200
    assert client.post("/unload").get_json() == {"status": "unloaded"}
    health = client.get("/health").get_json()
    assert health["status"] == "unloaded" and health["load_seconds"] is None
    again = caption(client, png_bytes())  # the next request loads the model again
    assert again.status_code == 200, again.get_json()
    assert client.get("/health").get_json()["status"] == "ready"
    assert client.post("/unload").status_code == 200
    assert client.post("/load").status_code == 200
    wait_status(client, "ready")


def test_queue_full_is_503_with_retry_after(make_app):
    app = make_app(CAPTION_QUEUE_SIZE=1)
    manager = app.extensions["caption_models"]
    results = {}

    def waiting_request():
        results["first"] = caption(app.test_client(), png_bytes())

    with manager._model_lock:  # a caption is "running": the next request waits in the queue
        thread = threading.Thread(target=waiting_request)
        thread.start()
        deadline = time.monotonic() + 10
        while app.test_client().get("/health").get_json()["queue"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        full = caption(app.test_client(), png_bytes())
        assert full.status_code == 503 and int(full.headers["Retry-After"]) > 0
        assert "queue is full" in full.get_json()["error"]
    thread.join(30)
    assert results["first"].status_code == 200


def test_request_timeout_is_504(make_app):
    app = make_app(CAPTION_TIMEOUT_S=1)
    with app.extensions["caption_models"]._model_lock:
        response = caption(app.test_client(), png_bytes())
    assert response.status_code == 504 and "did not start within 1 s" in response.get_json()["error"]


def test_generation_past_the_deadline_stops(make_app):
    manager = make_app().extensions["caption_models"]
    from caption_service.captioning import generate
    from caption_service.images import prepare

    uri = prepare(png_bytes(), 10_000_000, 1_000_000)
    with pytest.raises(model_manager.CaptionTimeout):
        # the lock is had in time, but the generation deadline is already past: it stops after one token
        manager.run(lambda llm, _: generate(llm, uri, "Describe.", 64, time.monotonic()), time.monotonic() + 5)
    assert manager.health().status == "ready"  # the model is still usable afterwards


def test_503_while_loading(make_settings, demo_root, monkeypatch):
    monkeypatch.setattr(model_manager, "LOAD_WAIT_S", 0.05)
    release = threading.Event()

    def slow_loader(settings, paths, device):
        release.wait(30)
        return build_llama(settings, paths, device)

    app = caption_service.create_app(make_settings(STUDIO_DEMO=1, CAPTION_IDLE_UNLOAD_S=0))
    app.extensions["caption_models"].close()
    manager = ModelManager(app.config["STUDIO_SETTINGS"], loader=slow_loader).start()
    app.extensions["caption_models"] = manager
    client = app.test_client()
    try:
        assert client.get("/health").get_json()["status"] == "loading"
        response = caption(client, png_bytes())
        assert response.status_code == 503 and "loading" in response.get_json()["error"]
        assert int(response.headers["Retry-After"]) > 0
        release.set()
        wait_status(client, "ready")
        assert caption(client, png_bytes()).status_code == 200
    finally:
        release.set()
        manager.close()


def test_idle_unload(make_app, monkeypatch):
    monkeypatch.setattr(model_manager, "LOAD_WAIT_S", 60.0)
    app = make_app(CAPTION_IDLE_UNLOAD_S=0.3)
    client = app.test_client()
    assert caption(client, png_bytes()).status_code == 200
    wait_status(client, "unloaded", timeout=15)
    assert caption(client, png_bytes()).status_code == 200  # and it comes back on demand
