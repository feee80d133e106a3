"""A job's own webhook comes from whoever can start a job: it never makes the pod post to itself, a cloud's metadata
service or its own network (unless ALLOW_PRIVATE_URLS=1), and a receiver's redirect is not followed there. The
pod's WEBHOOK_URL, set by whoever runs the pod, may point anywhere. A local server stands in for the receivers."""

from __future__ import annotations

import logging

import pytest

import trainer
from tests.test_trainer_worker import TINY_CONFIG, make_export, receiver  # noqa: F401 - receiver is a fixture
from trainer.webhooks import WebhookDispatcher, dispatcher_for


class _Job:
    def __init__(self, url):
        self.id, self.name, self.status, self.webhook_url, self.lora_path = "j1", "job", "running", url, None

    def __getattr__(self, name):
        return None


def test_a_jobs_webhook_to_the_pod_itself_is_not_sent_nor_retried(receiver, make_settings, caplog):  # noqa: F811
    hook = receiver()
    dispatcher = dispatcher_for(make_settings())
    with caplog.at_level(logging.WARNING):
        dispatcher.job_status(_Job(f"{hook.url}/api/jobs/secret-path"))
        assert dispatcher.flush(10)
    assert hook.requests == [] and dispatcher.failed == 1
    assert "127.0.0.1 is a private or local address" in caplog.text and "ALLOW_PRIVATE_URLS=1" in caplog.text
    assert "secret-path" not in caplog.text and "not retried" in caplog.text


def test_the_pods_own_webhook_url_and_allowed_private_ones_are_sent(receiver, make_settings):  # noqa: F811
    pod_hook, own_hook = receiver(), receiver()
    dispatcher = dispatcher_for(make_settings(WEBHOOK_URL=f"{pod_hook.url}/pod"))
    dispatcher.job_status(_Job(None))  # no webhook of its own: WEBHOOK_URL's, trusted
    assert dispatcher.flush(10) and len(pod_hook.wait(1)) == 1
    allowed = dispatcher_for(make_settings(ALLOW_PRIVATE_URLS=1))
    allowed.job_status(_Job(f"{own_hook.url}/mine"))
    assert allowed.flush(10) and len(own_hook.wait(1)) == 1 and allowed.delivered == 1


def test_a_receivers_redirect_is_not_followed(receiver, caplog):  # noqa: F811
    hook = receiver(codes=[302])
    dispatcher = WebhookDispatcher(None, base_delay_s=0.01, allow_private=True)
    with caplog.at_level(logging.WARNING):
        dispatcher.send(f"{hook.url}/moved", "job.completed", {"job": {"id": "j1"}})
        assert dispatcher.flush(10)
    assert len(hook.requests) == 1 and dispatcher.failed == 1
    assert "redirect is not followed" in caplog.text


@pytest.mark.parametrize("url", ["http://127.0.0.1:8675/api/jobs", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::1]:3000/x", "https://10.1.2.3/hook", "http://localhost:11435/unload"])
def test_a_private_webhook_is_refused_when_the_job_is_made(make_settings, url):
    settings = make_settings(STUDIO_DEMO=1)
    client = trainer.create_app(settings).test_client()
    body = {"name": "j", "recipe": "zimage-turbo", "dataset": make_export(settings.root).name, "config": TINY_CONFIG,
            "webhook_url": url}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422
    message = {e["field"]: e["message"] for e in response.get_json()["details"]}["webhook_url"]
    assert "private or local address" in message and "ALLOW_PRIVATE_URLS=1" in message
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_allow_private_urls_lets_a_job_use_its_own_network(make_settings):
    settings = make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=1)
    client = trainer.create_app(settings).test_client()
    body = {"name": "j", "recipe": "zimage-turbo", "dataset": make_export(settings.root).name, "config": TINY_CONFIG,
            "webhook_url": "http://192.168.1.20:5000/hook"}
    assert client.post("/api/jobs", json=body).status_code == 201
