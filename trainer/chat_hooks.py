"""A job's webhook URL that is a Discord or Slack webhook gets a chat message instead of the studio's JSON: when the
job starts, and when it ends (done, failed, stopped, interrupted), with a link to its page on a RunPod pod.
Discord's message carries the base vs LoRA grid of a finished job as a picture.

Told apart by their paths: discord.com/api/webhooks/<id>/<token>, hooks.slack.com/services/T…/B…/… (also on
another host: a relay, a test server).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from studio.text import plural

DISCORD_PATH = re.compile(r"^/api/webhooks/\d+/[\w-]+/?$")
SLACK_PATH = re.compile(r"^/services/T\w+/B\w+/\w+/?$")
# the status changes a chat hears about (the studio's JSON webhook gets every one)
EVENTS = {"job.running", "job.completed", "job.failed", "job.stopped", "job.interrupted"}
GRID = "proof_grid.png"
MAX_TEXT = 1900  # Discord refuses a message over 2,000 characters


def chat_kind(url: str) -> str | None:
    """"discord", "slack", or None for any other webhook."""
    path = urlsplit(url).path
    return "discord" if DISCORD_PATH.match(path) else "slack" if SLACK_PATH.match(path) else None


TYPED = ("name", "id", "dataset", "lora_file", "error", "message")  # what a person or a file named: shown as typed


def job_link(settings):
    """job id -> its page's address through RunPod's proxy (None away from RunPod: no address to give)."""
    pod = settings.runpod_pod_id
    return (lambda job_id: f"https://{pod}-{settings.trainer_port}.proxy.runpod.net/jobs/{job_id}") if pod else None


# what a chat reads as formatting in a name someone typed: Discord's markdown (a masked link "[text](url)", bold,
# a heading, a quote), Slack's &, < and > ("<!channel>" pings everyone, "<url|text>" is a link)
DISCORD_MARKUP = re.compile(r"([\\*_~`|\[\]()<>])")
SLACK_MARKUP = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def plain(value, kind: str | None) -> str:
    """`value` (a job's name, its dataset, an error) as it was typed, never formatting, in a chat of `kind`."""
    text = str(value)
    if kind == "slack":
        return "".join(SLACK_MARKUP.get(char, char) for char in text)
    return DISCORD_MARKUP.sub(r"\\\1", text)


def message(event: str, job: dict, link: str | None, kind: str | None = "discord") -> str:
    """The sentence a person reads in the chat (of `kind`: the names in it are never read as formatting)."""
    job = {key: plain(job[key], kind) if key in TYPED and isinstance(job.get(key), str) else job.get(key)
           for key in job}
    name, step, total = job.get("name") or job.get("id"), job.get("step") or 0, job.get("total_steps")
    where = f"step {step:,} of {total:,}" if total else f"step {step:,}"
    if event == "job.running":
        on = f"on {job.get('dataset') or 'its dataset'}"
        text = f"▶ **{name}** started: {plural(total, 'step')} {on}." if total else f"▶ **{name}** started {on}."
    elif event == "job.completed":
        final = job.get("final_loss", job.get("loss"))  # as the job's page says it
        loss = f", final loss {final:.4f}" if isinstance(final, int | float) else ""
        took = _duration(job)
        text = (f"✓ **{name}** is done: {plural(step, 'step')}{loss}{f' in {took}' if took else ''}. "
                f"LoRA: {job.get('lora_file') or 'see its page'}")
    elif event == "job.failed":
        text = f"✗ **{name}** failed at {where}: {job.get('error') or job.get('message') or 'see its log'}"
    elif event == "job.stopped":
        text = f"■ **{name}** stopped at {where}{' (it can be resumed)' if job.get('resumable') else ''}."
    else:
        text = f"⏸ **{name}** was interrupted at {where}: it continues when the worker starts again."
    text = text[:MAX_TEXT]
    return f"{text}\n{link}" if link else text


def chat_request(kind: str, event: str, job: dict, link: str | None, lora_path: str | None) -> tuple[bytes, str]:
    """(body, content type) of the chat message; Discord's carries a finished job's grid when there is one."""
    text = message(event, job, link, kind)
    grid = Path(lora_path).parent / GRID if kind == "discord" and lora_path and event == "job.completed" else None
    if grid is None or not grid.is_file():
        return text_request(kind, text), "application/json"
    return _multipart(_discord_payload(text), grid)


def text_request(kind: str, text: str) -> bytes:
    """The JSON body of a chat message that is only `text` (the pod's own news, trainer.pod_notices)."""
    if kind == "slack":
        return json.dumps({"text": text.replace("**", "*")}).encode()
    return json.dumps(_discord_payload(text)).encode()


def _discord_payload(text: str) -> dict:
    return {"content": text, "username": "Z-Image Studio", "allowed_mentions": {"parse": []}}


def _multipart(payload: dict, picture: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps(payload)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"{GRID}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return head + picture.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _duration(job: dict) -> str:
    """How long the ended job trained, every run of it (a resumed job's earlier runs too)."""
    seconds = job.get("run_s") or 0
    if seconds <= 0:
        return ""
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"
