"""The caption service as a developer calls it with curl or requests: every answer is JSON with one sentence,
and text fields too long for the model are refused before they reach llama.cpp."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import io

import pytest

from caption_service import captioning
from tests.test_caption_service import b64, caption, client, make_app, png_bytes  # noqa: F401 - fixtures

ANY = {"Accept": "*/*"}  # what curl and requests send


def test_a_prompt_longer_than_the_dataset_managers_limit_is_422(client):
    response = caption(client, png_bytes(), prompt="x" * 2001)
    assert response.status_code == 422
    assert response.get_json()["error"] == "prompt is 2,001 characters long; the limit is 2,000."


def test_a_prompt_that_overflows_the_models_context_is_422_not_500(client, monkeypatch):
    def overflow(llm, data_uri, instruction, max_tokens, deadline):
        raise ValueError("Prompt exceeds n_ctx: 3100 > 2560")  # what llama.cpp's chat handler raises

    monkeypatch.setattr(captioning, "generate", overflow)
    response = caption(client, png_bytes(), prompt="describe the fur in great detail")
    assert response.status_code == 422
    assert "too long for the model's context" in response.get_json()["error"]
    monkeypatch.undo()
    assert caption(client, png_bytes()).status_code == 200  # the model is still there for the next request


def test_other_errors_inside_the_model_stay_internal_errors(client, monkeypatch):
    def broken(llm, data_uri, instruction, max_tokens, deadline):
        raise ValueError("Failed to create bitmap from image bytes")

    monkeypatch.setattr(captioning, "generate", broken)
    response = caption(client, png_bytes())
    assert response.status_code == 500 and response.get_json()["error"].startswith("Internal error")


@pytest.mark.parametrize("field, value, words", [
    ("trigger_word", "t" * 61, "trigger_word is 61 characters long; the limit is 60."),
    ("style", "s" * 41, "style is 41 characters long; the limit is 40."),
])
def test_overlong_text_fields_are_422(client, field, value, words):
    response = caption(client, png_bytes(), **{field: value})
    assert response.status_code == 422 and response.get_json()["error"] == words


def test_the_limits_apply_to_multipart_requests_too(client):
    response = client.post("/caption", data={"file": (io.BytesIO(png_bytes()), "a.png"),
                                             "trigger_word": "w" * 100})
    assert response.status_code == 422 and "trigger_word" in response.get_json()["error"]


def test_a_trigger_word_within_the_limit_still_leads_the_caption(client):
    response = caption(client, png_bytes(), trigger_word="mycat")
    assert response.status_code == 200 and response.get_json()["caption"].startswith("mycat")


def test_a_wrong_method_or_path_answers_json_to_curl(client):
    wrong_method = client.get("/caption", headers=ANY)
    assert wrong_method.status_code == 405 and wrong_method.is_json
    assert wrong_method.get_json()["error"] == "GET is not allowed on /caption: use POST."
    missing = client.post("/v1/caption", headers=ANY, json={"image": b64(png_bytes())})
    assert missing.status_code == 404 and missing.is_json
    assert "/v1/caption is not a route of the caption service: GET /health, POST /caption" in \
        missing.get_json()["error"]


def test_a_body_too_large_is_still_its_own_413(make_app):
    app = make_app()
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = app.test_client().post("/caption", headers=ANY, json={"image": b64(png_bytes(size=(300, 300)))})
    assert response.status_code == 413 and "send a smaller image" in response.get_json()["error"]


def test_unknown_routes_stay_behind_the_password(make_app):
    app = make_app(STUDIO_PASSWORD="pw")
    client = app.test_client()
    assert client.post("/nope", headers=ANY).status_code == 401  # no route list before the password
    assert client.post("/nope", headers={"Authorization": "Bearer pw"}).status_code == 404


def test_images_are_decoded_two_at_a_time_however_many_requests_come(make_app, monkeypatch):
    import threading

    from caption_service import model_manager

    app = make_app()
    inside, most, lock, release = [0], [0], threading.Lock(), threading.Event()
    real_prepare = captioning.prepare

    def slow_prepare(data, max_image_pixels, max_pixels):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        release.wait(30)
        with lock:
            inside[0] -= 1
        return real_prepare(data, max_image_pixels, max_pixels)

    monkeypatch.setattr(captioning, "prepare", slow_prepare)
    codes = []

    def send():
        codes.append(caption(app.test_client(), png_bytes()).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for _ in range(300):  # until the decoding threads are busy
        if inside[0] == model_manager.DECODE_SLOTS:
            break
        release.wait(0.01)
    release.wait(0.3)  # room for a third decode to start, were it allowed to
    assert most[0] == model_manager.DECODE_SLOTS
    release.set()
    for thread in threads:
        thread.join(60)
    assert codes == [200] * 6 and most[0] == model_manager.DECODE_SLOTS


def test_a_full_queue_answers_before_the_image_is_decoded(make_app, monkeypatch):
    app = make_app(CAPTION_QUEUE_SIZE=1)
    decoded = []
    monkeypatch.setattr(captioning, "prepare", lambda *args: decoded.append(1))
    manager = app.extensions["caption_models"]
    with manager._state:
        manager._waiting = 1  # one request already waits for the model
    try:
        response = caption(app.test_client(), png_bytes())
    finally:
        with manager._state:
            manager._waiting = 0
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert "queue is full" in response.get_json()["error"] and decoded == []
