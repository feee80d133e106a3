"""Job webhooks that cost nothing when the receiver says no: a refusal (a deleted Discord webhook: 404) is not sent
again and again, a rate limit (429) is waited out, and the log never holds a webhook's address (its path is its
password). A local server stands in for the receivers."""

from __future__ import annotations

import logging

from tests.test_trainer_worker import receiver  # noqa: F401 - a webhook receiver, a fixture
from trainer.webhooks import WebhookDispatcher, where


def test_a_refused_webhook_is_not_retried_and_its_token_stays_out_of_the_log(receiver, caplog):  # noqa: F811
    hook = receiver(codes=[404, 404, 404, 404, 404])  # Discord's answer once a webhook was deleted
    url = f"{hook.url}/api/webhooks/123/secret-token-abc"
    dispatcher = WebhookDispatcher(None, base_delay_s=0.01, allow_private=True)
    with caplog.at_level(logging.WARNING):
        dispatcher.send(url, "job.completed", {"job": {"id": "j1"}})
        assert dispatcher.flush(10)
    assert len(hook.requests) == 1 and dispatcher.failed == 1
    assert "secret-token-abc" not in caplog.text and "/api/webhooks" not in caplog.text
    assert "HTTP 404" in caplog.text and "not retried" in caplog.text


def test_a_rate_limit_and_a_server_error_are_tried_again_until_delivered(receiver, caplog):  # noqa: F811
    hook = receiver(codes=[429, 502])
    dispatcher = WebhookDispatcher(None, base_delay_s=0.01, allow_private=True)
    with caplog.at_level(logging.WARNING):
        dispatcher.send(f"{hook.url}/hooks/catch/99/zap-secret/", "job.failed", {"job": {"id": "j2"}})
        assert dispatcher.flush(20)
    assert len(hook.requests) == 3 and dispatcher.delivered == 1
    assert "zap-secret" not in caplog.text


def test_an_unreachable_webhook_is_logged_by_its_host_only(caplog):
    dispatcher = WebhookDispatcher(None, attempts=2, base_delay_s=0.01, timeout_s=2, allow_private=True)
    with caplog.at_level(logging.WARNING):
        dispatcher.send("http://127.0.0.1:9/services/T1/B2/slack-secret?token=q-secret", "job.failed", {})
        assert dispatcher.flush(10)
    assert dispatcher.failed == 1
    assert "slack-secret" not in caplog.text and "q-secret" not in caplog.text and "http://127.0.0.1:9/…" in caplog.text


def test_where_keeps_the_host_and_drops_the_rest():
    assert where("https://user:pw@discord.com/api/webhooks/1/tok?wait=true") == "https://discord.com/…"
    assert where("http://relay.local:8080/x") == "http://relay.local:8080/…"


def test_the_chat_gives_the_final_loss_the_jobs_page_gives(receiver):  # noqa: F811
    import json

    from tests.test_chat_hooks import _job

    hook = receiver()
    url = f"{hook.url}/api/webhooks/7/tok"
    dispatcher = WebhookDispatcher(None, base_delay_s=0.01, allow_private=True)
    # the last step's loss jumps around; the job's message says the smoothed one the run ended on
    dispatcher.job_status(_job(url, "completed", loss=1.515, result={"final_smooth_loss": 0.3853, "final_loss": 1.515}))
    assert dispatcher.flush(10)
    (told,) = hook.wait(1)
    assert "final loss 0.3853" in json.loads(told["body"])["content"]
