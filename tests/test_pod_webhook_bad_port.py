"""A job's webhook whose port is not one (https://host:99999/…, accepted when the job was queued) is a refused
delivery, said in the log by its host alone: it must not end the delivery thread with a ValueError (the job's news
then lost without a word, and its count of failures wrong). A local server stands in for the receivers."""

from __future__ import annotations

import logging

from tests.test_trainer_worker import receiver  # noqa: F401 - a webhook receiver, a fixture
from trainer.webhooks import WebhookDispatcher, where


def test_a_port_out_of_range_is_a_refused_delivery_and_the_next_one_goes(receiver, caplog):  # noqa: F811
    hook = receiver()
    dispatcher = WebhookDispatcher(None, base_delay_s=0.01, allow_private=True)
    with caplog.at_level(logging.WARNING):
        dispatcher.send("http://127.0.0.1:99999/api/webhooks/1/port-secret", "job.completed", {"job": {"id": "j1"}})
        dispatcher.send(f"{hook.url}/hooks/fine", "job.completed", {"job": {"id": "j2"}})
        assert dispatcher.flush(10)
    assert dispatcher.failed == 1 and dispatcher.delivered == 1 and len(hook.wait(1)) == 1
    assert "not retried" in caplog.text and "port-secret" not in caplog.text
    assert where("http://127.0.0.1:99999/api/webhooks/1/port-secret") == "http://127.0.0.1/…"
