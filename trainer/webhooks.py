"""Job webhooks: a signed POST on every status change, retried with backoff in a background thread (a Discord or
Slack webhook gets a chat message instead, trainer.chat_hooks).

The body is JSON; `X-Studio-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body bytes with
WEBHOOK_SECRET (absent when no secret is set). Delivery never blocks training: `send` only queues. A receiver's
refusal (HTTP 4xx: a deleted Discord webhook, a wrong address) is not retried, a rate limit (429) waits as long as
its Retry-After asks (capped); logs name only the receiver's host, since a webhook's address is its password.

A job's own webhook comes from whoever can start a job, so it is sent only to a public address, checked at each
delivery and connected to as checked (app.link_fetch), and a redirect is not followed: the pod never posts to
itself, a cloud's metadata service or its network, unless ALLOW_PRIVATE_URLS=1. WEBHOOK_URL, set by whoever runs
the pod, may point anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from app.link_fetch import BlockedAddress, checked_address, pinned_connection, request_target
from studio.jobs import JobError
from studio.text import address_only
from trainer.chat_hooks import EVENTS as CHAT_EVENTS
from trainer.chat_hooks import chat_kind, chat_request, job_link, text_request

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Studio-Signature"
RETRY_AFTER_MAX_S = 60.0  # a rate limit asking for longer holds every later delivery up: wait this long at most
RETRIED_CODES = (408, 425, 429)  # of the 4xx answers, those a later try may get past
TRY_DEADLINE_TIMEOUTS = 3  # a whole try (connect, send, answer) may take this many read timeouts


where = address_only  # what logs may say of a webhook's address (the path and query hold its token)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does: compare the header with its own signature in constant time."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header)


@dataclass
class Delivery:
    url: str
    body: bytes
    event: str
    delivery_id: str
    attempt: int = 0
    content_type: str = "application/json"


class WebhookDispatcher:
    """One daemon thread delivers queued webhooks in order; failures are retried with backoff."""

    def __init__(self, secret: str | None, attempts: int = 5, base_delay_s: float = 2.0, timeout_s: float = 10.0,
                 job_link=None, default_url: str | None = None, allow_private: bool = False):
        self.secret = secret
        self.allow_private = allow_private  # ALLOW_PRIVATE_URLS: a job's own webhook may go to a private address
        self.default_url = default_url  # WEBHOOK_URL: every job's, unless the job names its own
        self.job_link = job_link  # job id -> its page's address, for chat messages (trainer.chat_hooks)
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.timeout_s = timeout_s
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def send(self, url: str | None, event: str, payload: dict) -> None:
        if not url:
            return
        body = json.dumps({"event": event, "sent_at": time.time(), **payload}, default=str).encode("utf-8")
        self._enqueue(url, body, event)

    def _enqueue(self, url: str, body: bytes, event: str, content_type: str = "application/json") -> None:
        self._queue.put(Delivery(url=url, body=body, event=event, delivery_id=uuid.uuid4().hex,
                                 content_type=content_type))
        self._start()

    def job_status(self, job) -> None:
        """Announce a job's new status to its webhook, if it has one: a Discord or Slack webhook gets a chat
        message when the job starts and ends, any other the studio's JSON on every change."""
        url = job.webhook_url or self.default_url
        event, kind = f"job.{job.status}", chat_kind(url or "")
        if kind is None:
            self.send(url, event, {"job": _job_payload(job)})
        elif event in CHAT_EVENTS:
            link = self.job_link(job.id) if self.job_link else None
            body, content_type = chat_request(kind, event, _job_payload(job), link, job.lora_path)
            self._enqueue(url, body, event, content_type)

    def pod_event(self, url: str | None, event: str, text: str, details: dict) -> None:
        """The pod's own news (trainer.pod_notices): `text` as a chat line to Discord or Slack, else the studio's
        JSON with `details` as its "pod" and `text` as its "message"."""
        kind = chat_kind(url or "")
        if kind is None:
            self.send(url, event, {"pod": details, "message": text})
        elif url:
            self._enqueue(url, text_request(kind, text), event)

    def job_deleted(self, job) -> None:
        url = job.webhook_url or self.default_url
        if chat_kind(url or "") is None:
            self.send(url, "job.deleted", {"job": {**_job_payload(job), "status": "deleted"}})

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait (bounded) for queued deliveries: used before the worker exits."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is not None:
                    self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, item: Delivery) -> None:
        headers = {"Content-Type": item.content_type, "User-Agent": "zimage-studio-trainer",
                   "X-Studio-Event": item.event, "X-Studio-Delivery": item.delivery_id}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(item.body, self.secret)
        for attempt in range(1, self.attempts + 1):
            item.attempt = attempt
            error, retry_after = self._post(item, headers)
            if error is None:
                self.delivered += 1
                return
            if retry_after is None:
                log.error("webhook %s to %s was refused (%s); not retried", item.event, where(item.url), error)
                break
            if attempt < self.attempts:
                delay = max(retry_after, self.base_delay_s * 2 ** (attempt - 1))
                log.warning("webhook %s to %s failed (%s); retrying in %.1f s", item.event, where(item.url), error,
                            delay)
                time.sleep(delay)
            else:
                log.error("webhook %s to %s failed %d times (%s); giving up", item.event, where(item.url), attempt,
                          error)
        self.failed += 1

    def _post(self, item: Delivery, headers: dict) -> tuple[str | None, float | None]:
        """(None, _) when delivered; else (what went wrong, the least wait before another try: None when another
        try cannot help)."""
        try:
            address = checked_address(item.url, self.allow_private or item.url == self.default_url)
        except BlockedAddress as exc:
            return f"{exc.host} is a private or local address ({exc.address}): set ALLOW_PRIVATE_URLS=1 to allow " \
                   "it", None
        except (JobError, ValueError) as exc:
            return str(exc), 0.0
        try:
            conn = pinned_connection(item.url, address, self.timeout_s)
        except ValueError as exc:  # a port out of range: another try cannot help
            return str(exc), None
        # each read has `timeout_s`, the whole try none: a receiver that answers a byte at a time would hold the one
        # delivery thread (every later webhook, the pod's own news) for good, so the try is cut at its deadline
        cut = threading.Timer(self.timeout_s * TRY_DEADLINE_TIMEOUTS, _cut_off, args=(conn,))
        cut.daemon = True
        cut.start()
        try:
            conn.request("POST", request_target(item.url), body=item.body, headers=headers)
            response = conn.getresponse()
            response.read(1024)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not cut.is_alive():
                return f"no whole answer within {self.timeout_s * TRY_DEADLINE_TIMEOUTS:g} s", 0.0
            return (str(exc) or type(exc).__name__).replace(item.url, where(item.url)), 0.0
        finally:
            cut.cancel()
            conn.close()
        code = response.status
        if 200 <= code < 300:
            return None, None
        if 300 <= code < 400:
            return f"HTTP {code}: a webhook's redirect is not followed", None
        if 400 <= code < 500 and code not in RETRIED_CODES:
            return f"HTTP {code}", None
        return f"HTTP {code}", _retry_after(response.getheader("Retry-After"))


def _cut_off(conn: http.client.HTTPConnection) -> None:
    """End a try that outlasted its deadline: the blocked read or write returns with an error at once."""
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed meanwhile: the try ended by itself


def _retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks for (a number; a date or nothing: no wait of its own), capped."""
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S) if seconds == seconds else 0.0


def dispatcher_for(settings) -> WebhookDispatcher:
    """The studio's dispatcher: signed with WEBHOOK_SECRET, WEBHOOK_URL for jobs without their own, chat messages
    linking to the job's page on a RunPod pod."""
    return WebhookDispatcher(settings.webhook_secret, job_link=job_link(settings), default_url=settings.webhook_url,
                             allow_private=settings.allow_private_urls)


def _job_payload(job) -> dict:
    keys = ("id", "name", "recipe", "dataset", "dataset_version", "datasets", "status", "step", "total_steps", "loss",
            "message", "error", "resumable", "created_at", "started_at", "finished_at", "run_s")
    data = {key: getattr(job, key) for key in keys}
    data["lora_file"] = job.lora_path.rsplit("/", 1)[-1] if job.lora_path else None
    result = getattr(job, "result", None) or {}
    final = result.get("final_smooth_loss", result.get("final_loss"))
    if isinstance(final, int | float):  # the loss the job's page and message give: smoothed, not the last step's
        data["final_loss"] = final
    return data
