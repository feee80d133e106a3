"""A password is the password however it is typed or sent, and "Log out" ends the session for every copy of
its cookie."""

from __future__ import annotations

import http.client
import subprocess
import unicodedata

import pytest

import app as datasets_pkg
import trainer
from studio.auth import bearer_header
from tests.helpers import serving_app

UNICODE_PASSWORD = "pässwörd 密码 🔑"


@pytest.fixture
def served(make_settings):
    """The dataset manager on a real HTTP server (headers decoded from bytes as any WSGI server does): its port."""
    with serving_app(datasets_pkg.create_app(make_settings(STUDIO_PASSWORD=UNICODE_PASSWORD))) as url:
        yield int(url.rsplit(":", 1)[1])


def _get(port: int, path: str, headers: dict) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_unicode_password_works_as_bearer_from_python_and_curl(served):
    # what the services send each other (http.client refuses letters outside latin-1 in a plain str)
    assert _get(served, "/api/datasets", {"Authorization": bearer_header(UNICODE_PASSWORD)}) == 200
    # what curl sends for -H "Authorization: Bearer pässwörd ..." (UTF-8 bytes on the wire)
    curl = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                           f"Authorization: Bearer {UNICODE_PASSWORD}", f"http://127.0.0.1:{served}/api/datasets"],
                          capture_output=True, text=True, check=True)
    assert curl.stdout == "200"
    assert _get(served, "/api/datasets", {"Authorization": bearer_header("pässwörd 密码 🔒")}) == 401


def test_a_password_is_typed_with_spaces_around_it_or_in_decomposed_letters(make_settings):
    # STUDIO_PASSWORD=" my pässwörd " (a RunPod form keeps the spaces; the setting is read without them)
    client = trainer.create_app(make_settings(STUDIO_PASSWORD=" my pässwörd ")).test_client()
    assert client.post("/login", data={"password": " my pässwörd "}).status_code == 302
    client = trainer.create_app(make_settings(STUDIO_PASSWORD=" my pässwörd ")).test_client()
    decomposed = unicodedata.normalize("NFD", "my pässwörd")
    assert decomposed != "my pässwörd"
    assert client.post("/login", data={"password": decomposed}).status_code == 302
    assert client.get("/api/jobs").status_code == 200
    # the spaces inside it still count
    wrong = trainer.create_app(make_settings(STUDIO_PASSWORD="my pass")).test_client()
    assert wrong.post("/login", data={"password": "mypass"}).status_code == 401


def test_logging_out_ends_every_copy_of_the_session_cookie_on_every_service(make_settings):
    settings = make_settings(STUDIO_PASSWORD="s3cret")
    datasets_app, trainer_app = datasets_pkg.create_app(settings), trainer.create_app(settings)
    browser = datasets_app.test_client()
    assert browser.post("/login", data={"password": "s3cret"}).status_code == 302
    stolen = browser.get_cookie("studio_session").value
    thief_datasets, thief_trainer = datasets_app.test_client(), trainer_app.test_client()
    for thief in (thief_datasets, thief_trainer):
        thief.set_cookie("studio_session", stolen)
        assert thief.get("/api/datasets" if thief is thief_datasets else "/api/jobs").status_code == 200

    assert browser.post("/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 302
    assert browser.get("/api/datasets").status_code == 401
    assert thief_datasets.get("/api/datasets").status_code == 401
    assert thief_trainer.get("/api/jobs").status_code == 401
    # a new login works again
    assert browser.post("/login", data={"password": "s3cret"}).status_code == 302
    assert browser.get("/api/datasets").status_code == 200
