"""A webhook URL whose port is no port (https://host:99999/x, a typo) is refused when the job is made, with
ALLOW_PRIVATE_URLS too, and a job stored with one before this check never breaks the job list for everyone."""

from __future__ import annotations

import sqlite3

import pytest

import trainer
from studio.text import address_only
from studio.workspace import Workspace
from tests.test_trainer_worker import TINY_CONFIG, make_export


@pytest.mark.parametrize("private", [0, 1])
@pytest.mark.parametrize("url", ["https://hooks.example.com:99999/x", "https://hooks.example.com:0/x",
                                 "https://hooks.example.com:http/x"])
def test_a_webhook_port_that_is_no_port_is_refused_when_the_job_is_made(make_settings, url, private):
    settings = make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=private)
    client = trainer.create_app(settings).test_client()
    body = {"name": "j", "recipe": "zimage-turbo", "dataset": make_export(settings.root).name, "config": TINY_CONFIG,
            "webhook_url": url}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422, response.get_json()
    message = {e["field"]: e["message"] for e in response.get_json()["details"]}["webhook_url"]
    assert "port" in message
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_a_stored_job_with_such_a_webhook_leaves_the_job_list_whole(make_settings):
    settings = make_settings(STUDIO_DEMO=1)
    client = trainer.create_app(settings).test_client()
    export = make_export(settings.root).name
    made = client.post("/api/jobs", json={"name": "j", "recipe": "zimage-turbo", "dataset": export,
                                          "config": TINY_CONFIG, "webhook_url": "https://hooks.example.com/x"})
    job_id = made.get_json()["job"]["id"]
    with sqlite3.connect(Workspace(settings.root).db_path) as db:  # as a studio before the port check stored it
        db.execute("UPDATE jobs SET webhook_url = ? WHERE id = ?", ("https://hooks.example.com:99999/secret", job_id))
    listed = client.get("/api/jobs")
    assert listed.status_code == 200 and [job["id"] for job in listed.get_json()["jobs"]] == [job_id]
    assert "secret" not in listed.get_data(as_text=True)


def test_what_logs_say_of_such_an_address():
    assert address_only("https://hooks.example.com:99999/secret?token=1") == "https://hooks.example.com/…"
    assert address_only("https://hooks.example.com:8443/secret") == "https://hooks.example.com:8443/…"
