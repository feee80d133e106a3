"""A caption model that did not load stays reported as such: through /unload (the trainer's worker sends one before
every training) and, to a caller without the password, without the folders it lives in."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import threading

from caption_service import model_manager
from caption_service.model_manager import ModelManager
from tests.test_caption_service import caption, make_app, png_bytes, wait_status  # noqa: F401 - fixtures


def test_unload_keeps_a_failed_load_and_its_reason(make_app, studio_root, monkeypatch):
    client = make_app(wait="error", STUDIO_DEMO=0).test_client()
    reason = client.get("/health").get_json()["reason"]
    assert "is missing" in reason
    attempts = []
    manager = client.application.extensions["caption_models"]
    real_open = manager._open
    monkeypatch.setattr(manager, "_open", lambda: attempts.append(1) or real_open())

    assert client.post("/unload").get_json() == {"status": "unloaded"}
    health = client.get("/health").get_json()
    assert health["status"] == "error" and health["reason"] == reason
    response = caption(client, png_bytes())
    assert response.status_code == 503 and "is missing" in response.get_json()["error"]
    assert attempts == []  # the same missing file is not tried again on every request

    assert client.post("/load").status_code == 200  # asked for: tried again
    wait_status(client, "error")
    assert attempts == [1]


def test_unload_after_a_good_load_still_says_unloaded(make_app):
    client = make_app().test_client()
    assert client.post("/unload").get_json() == {"status": "unloaded"}
    health = client.get("/health").get_json()
    assert health["status"] == "unloaded" and health["reason"] is None


def test_a_public_health_answer_hides_folders_with_spaces(make_app, tmp_path, monkeypatch):
    monkeypatch.setattr(model_manager, "ERROR_RETRY_S", 3600.0)
    folder = tmp_path / "clients secret" / "model files"
    folder.mkdir(parents=True)
    model, mmproj = folder / "model.gguf", folder / "mmproj.gguf"
    client = make_app(wait="error", STUDIO_DEMO=0, STUDIO_PASSWORD="pw", DEV_MODEL_PATH=model,
                      DEV_MMPROJ_PATH=mmproj).test_client()
    anonymous = client.get("/health").get_json()["reason"]
    assert anonymous.startswith("The caption model file model.gguf is missing: point DEV_MODEL_PATH")
    assert "secret" not in anonymous and "model files" not in anonymous


def test_a_public_health_answer_hides_a_corrupt_files_folder(make_app, demo_paths, tmp_path):
    folder = tmp_path / "my models"
    folder.mkdir()
    model, mmproj = folder / "model.gguf", folder / "mmproj.gguf"
    model.write_bytes(demo_paths.caption_model.read_bytes()[:50_000])
    mmproj.write_bytes(demo_paths.caption_mmproj.read_bytes())
    client = make_app(wait="error", STUDIO_DEMO=0, STUDIO_PASSWORD="pw", DEV_MODEL_PATH=model,
                      DEV_MMPROJ_PATH=mmproj).test_client()
    anonymous = client.get("/health").get_json()["reason"]
    assert "model.gguf could not be loaded" in anonymous and "my models" not in anonymous


class FakeModel:
    closed = False

    def close(self):
        self.closed = True


def test_unload_during_a_load_waits_until_that_model_is_freed(make_settings, demo_root):
    release, loaded = threading.Event(), []

    def slow_loader(settings, paths, device):
        release.wait(30)
        loaded.append(FakeModel())
        return loaded[-1]

    manager = ModelManager(make_settings(STUDIO_DEMO=1, CAPTION_IDLE_UNLOAD_S=0), loader=slow_loader).start()
    try:
        assert manager.health().status == "loading"
        assert manager.unload(timeout=0.2) is False  # still loading: not yet free, so not "unloaded"
        answers = []
        unloading = threading.Thread(target=lambda: answers.append(manager.unload(timeout=30)))
        unloading.start()
        unloading.join(0.3)
        assert unloading.is_alive() and answers == []
        release.set()
        unloading.join(30)
        assert answers == [True] and loaded[0].closed  # the copy that finished loading was thrown away
        assert manager.health().status == "unloaded"
    finally:
        release.set()
        manager.close()


def test_the_unload_route_says_503_while_a_load_cannot_be_waited_for(make_app, monkeypatch):
    client = make_app().test_client()
    manager = client.application.extensions["caption_models"]
    monkeypatch.setattr(manager, "unload", lambda timeout=None: False)
    response = client.post("/unload")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "A caption or a model load is still running; try again in a moment."
