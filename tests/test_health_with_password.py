"""/health stays public under STUDIO_PASSWORD (supervisord and the pod's checks send no password), but a client that
sends the password (the dataset manager asking the caption service) is told what the studio's users are: which
folder a failed caption model lives in. A wrong password there is refused and counted, as everywhere: /health is no
way to test guesses for free."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

from caption_service import model_manager
from tests.test_caption_service import make_app  # noqa: F401 - a fixture


def _missing_model_client(make_app, tmp_path, monkeypatch):
    monkeypatch.setattr(model_manager, "ERROR_RETRY_S", 3600.0)
    folder = tmp_path / "client models"
    folder.mkdir()
    return make_app(wait="error", STUDIO_DEMO=0, STUDIO_PASSWORD="pw", DEV_MODEL_PATH=folder / "model.gguf",
                    DEV_MMPROJ_PATH=folder / "mmproj.gguf").test_client()


def test_the_password_holder_sees_the_folder(make_app, tmp_path, monkeypatch):
    client = _missing_model_client(make_app, tmp_path, monkeypatch)
    anonymous = client.get("/health")
    assert anonymous.status_code == 200 and "client models" not in anonymous.get_json()["reason"]
    known = client.get("/health", headers={"Authorization": "Bearer pw"})
    assert known.status_code == 200 and str(tmp_path / "client models") in known.get_json()["reason"]


def test_a_wrong_password_on_health_is_refused_and_counted(make_app, tmp_path, monkeypatch):
    client = _missing_model_client(make_app, tmp_path, monkeypatch)
    answers = [client.get("/health", headers={"Authorization": f"Bearer guess{n}"}).status_code for n in range(40)]
    assert answers[0] == 401 and answers[-1] == 429  # the limiter stops the guessing
    assert client.get("/health").status_code == 200  # a probe without a password still gets its answer
