"""A Discord or Slack webhook as a job's webhook URL: a chat message when the job starts and ends (Discord's with
the base vs LoRA grid of a finished job), a link to the job's page on a RunPod pod; any other URL keeps the
studio's signed JSON on every change."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import default
from types import SimpleNamespace

import pytest

from tests.test_trainer_worker import receiver  # noqa: F401 - the local HTTP receiver fixture
from trainer.chat_hooks import chat_kind, job_link, message
from trainer.webhooks import WebhookDispatcher


def _job(url, status, lora_path=None, **extra):
    values = {"id": "20261202-j1", "name": "my-cat", "recipe": "zimage-turbo", "dataset": "cats",
              "dataset_version": "v1", "datasets": None, "status": status, "step": 3000, "total_steps": 3000,
              "loss": 0.31234, "message": "", "error": None, "resumable": False, "created_at": 1.0,
              "started_at": 1000.0, "finished_at": 1000.0 + 25 * 60, "run_s": 25 * 60, "lora_path": lora_path,
              "webhook_url": url}
    return SimpleNamespace(**{**values, **extra})


def test_discord_and_slack_are_told_apart_by_their_paths():
    assert chat_kind("https://discord.com/api/webhooks/1234567890/AbC-dEf_123") == "discord"
    assert chat_kind("https://discordapp.com/api/webhooks/1/x") == "discord"
    assert chat_kind("https://hooks.slack.com/services/T000/B000/XXXX") == "slack"
    assert chat_kind("https://example.com/hooks/training") is None
    assert chat_kind("https://discord.com/channels/1/2") is None and chat_kind("") is None


def test_the_messages_say_what_happened():
    done = message("job.completed", {**vars(_job("", "completed")), "lora_file": "my-cat.safetensors"}, None)
    assert done == "✓ **my-cat** is done: 3000 steps, final loss 0.3123 in 25 min. LoRA: my-cat.safetensors"
    failed = message("job.failed", {**vars(_job("", "failed")), "step": 1200, "error": "Out of GPU memory."},
                     "https://pod-8675.proxy.runpod.net/jobs/j1")
    assert failed == ("✗ **my-cat** failed at step 1,200 of 3,000: Out of GPU memory.\n"
                      "https://pod-8675.proxy.runpod.net/jobs/j1")
    assert message("job.running", vars(_job("", "running")), None) == "▶ **my-cat** started: 3000 steps on cats."
    assert message("job.running", {"id": "j1", "total_steps": None}, None) == "▶ **j1** started on its dataset."
    assert "(it can be resumed)" in message("job.stopped", {**vars(_job("", "stopped")), "resumable": True}, None)
    assert "continues when the worker starts again" in message("job.interrupted", vars(_job("", "interrupted")), None)


def test_a_job_link_on_runpod_only():
    pod = SimpleNamespace(runpod_pod_id="abc123", trainer_port=8675)
    assert job_link(pod)("j1") == "https://abc123-8675.proxy.runpod.net/jobs/j1"
    assert job_link(SimpleNamespace(runpod_pod_id=None, trainer_port=8675)) is None


def test_discord_hears_the_start_and_the_end_with_the_grid(receiver, tmp_path):  # noqa: F811
    hook = receiver()
    url = f"{hook.url}/api/webhooks/123/token-abc"
    lora = tmp_path / "lora" / "my-cat.safetensors"
    lora.parent.mkdir()
    lora.write_bytes(b"lora")
    (lora.parent / "proof_grid.png").write_bytes(b"\x89PNG grid")
    dispatcher = WebhookDispatcher("secret", base_delay_s=0.01, job_link=lambda job_id: f"https://pod/jobs/{job_id}",
                                   allow_private=True)
    for status in ("queued", "running", "stopping", "completed"):
        dispatcher.job_status(_job(url, status, str(lora) if status == "completed" else None))
    dispatcher.job_deleted(_job(url, "completed"))
    assert dispatcher.flush(10)
    started, finished = hook.wait(2)
    assert len(hook.requests) == 2  # queued, stopping and deleted are not chat news
    assert json.loads(started["body"])["content"] == "▶ **my-cat** started: 3000 steps on cats.\nhttps://pod/jobs/20261202-j1"
    assert finished["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    form = BytesParser(policy=default).parsebytes(
        b"Content-Type: " + finished["headers"]["Content-Type"].encode() + b"\r\n\r\n" + finished["body"])
    parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
    payload = json.loads(parts["payload_json"].get_content())
    assert payload["content"].startswith("✓ **my-cat** is done: 3000 steps") and payload["allowed_mentions"] == {
        "parse": []}
    assert parts["files[0]"].get_filename() == "proof_grid.png"
    assert parts["files[0]"].get_content() == b"\x89PNG grid"


def test_slack_gets_its_text_and_other_urls_the_studios_json(receiver):  # noqa: F811
    hook = receiver()
    dispatcher = WebhookDispatcher(None, base_delay_s=0.01, allow_private=True)
    dispatcher.job_status(_job(f"{hook.url}/services/T0001/B0001/abcdef", "failed", error="No images."))
    dispatcher.job_status(_job(f"{hook.url}/hooks/training", "queued"))
    assert dispatcher.flush(10)
    slack, plain = hook.wait(2)
    assert json.loads(slack["body"]) == {"text": "✗ *my-cat* failed at step 3,000 of 3,000: No images."}
    body = json.loads(plain["body"])
    assert body["event"] == "job.queued" and body["job"]["name"] == "my-cat"


@pytest.mark.parametrize("bad", ["https://discord.com/api/webhooks/x/y", "https://hooks.slack.com/services/a/b/c"])
def test_lookalike_paths_stay_plain_webhooks(bad):
    assert chat_kind(bad) is None


def test_webhook_url_is_every_jobs_unless_the_job_names_its_own(receiver, make_settings):  # noqa: F811
    from trainer.webhooks import dispatcher_for

    pod_hook, own_hook = receiver(), receiver()
    settings = make_settings(WEBHOOK_URL=f"{pod_hook.url}/api/webhooks/1/pod-token", RUNPOD_POD_ID="pod1",
                             ALLOW_PRIVATE_URLS=1)
    dispatcher = dispatcher_for(settings)
    dispatcher.job_status(_job(None, "running"))  # no webhook of its own: the pod's, a chat message with a link
    dispatcher.job_status(_job(f"{own_hook.url}/hooks/mine", "running"))
    assert dispatcher.flush(10)
    (pod,), (own,) = pod_hook.wait(1), own_hook.wait(1)
    assert json.loads(pod["body"])["content"].endswith("\nhttps://pod1-8675.proxy.runpod.net/jobs/20261202-j1")
    assert json.loads(own["body"])["event"] == "job.running"
    assert settings.public_dict()["webhook_url"] is True  # a webhook URL holds a token: never shown


def test_a_webhook_url_that_is_not_a_link_is_refused(make_settings):
    from studio.settings import SettingsError

    with pytest.raises(SettingsError, match="WEBHOOK_URL must be an http:// or https:// link"):
        make_settings(WEBHOOK_URL="discord.com/api/webhooks/1/x")


def test_a_name_typed_with_chat_markup_is_shown_as_typed():
    """A job named "<!channel>" must not ping a Slack channel, nor "[Open the job](https://evil)" become a link
    with false text in Discord."""
    job = {"name": "[Open the job](https://evil.example) <!channel>", "total_steps": 10, "dataset": "cats_*v2*"}
    discord = message("job.running", job, None, "discord")
    assert discord == (r"▶ **\[Open the job\]\(https://evil.example\) \<!channel\>** started: 10 steps on "
                       r"cats\_\*v2\*.")
    slack = message("job.running", job, None, "slack")
    assert "&lt;!channel&gt;" in slack and "<!channel>" not in slack and "[Open the job](https://evil.example)" in slack
    assert message("job.running", {"name": "my-cat & co", "total_steps": 3}, None, "slack") == (
        "▶ **my-cat &amp; co** started: 3 steps on its dataset.")
