"""The pod's own news for the webhooks, when it stops by itself (trainer.podstop): that it is stopping, or that RunPod
refused, so someone who queued jobs and left learns that the pod is still billing. Sent to WEBHOOK_URL and to the
last training job's own webhook: a Discord or Slack webhook gets a chat line, any other the studio's JSON
(`pod.stopping`, `pod.stop_failed`)."""

from __future__ import annotations

import logging
import sqlite3

from studio.jobs import JobStore
from studio.settings import Settings
from studio.workspace import Workspace
from trainer.podstop import RETRY_LATER_S

log = logging.getLogger(__name__)
FLUSH_S = 10.0  # a stop waits at most this long for the news to go out


def pod_message(settings: Settings, error: str | None, again: bool = False) -> str:
    """The sentence a person reads in the chat (`again`: the studio asks RunPod again later by itself)."""
    pod = settings.runpod_pod_id
    if error is None:
        return (f"■ The queue is done: pod {pod} is stopping, so its GPU no longer bills. Everything in /workspace "
                "stays; start it again from RunPod's console.")
    link = f"\nhttps://{pod}-{settings.trainer_port}.proxy.runpod.net/" if pod else ""
    later = f" The studio asks again every {RETRY_LATER_S / 60:.0f} minutes while nothing runs." if again else ""
    return (f"⚠ Pod {pod} did not stop by itself: {error}. It is still running and billing: stop it from RunPod's "
            f"console.{later}{link}")


def webhook_urls(settings: Settings) -> list[str]:
    """WEBHOOK_URL, and the webhook of the last training job when it named its own."""
    urls = [settings.webhook_url] if settings.webhook_url else []
    try:
        last = JobStore(Workspace(settings.root).db_path).list(kind="train", limit=1)
    except (sqlite3.Error, OSError) as exc:  # the news is a courtesy: a store that cannot be read only loses it
        log.warning("could not read the last job's webhook: %s", exc)
        last = []
    if last and last[0].webhook_url and last[0].webhook_url not in urls:
        urls.append(last[0].webhook_url)
    return urls


def tell_webhooks(settings: Settings, error: str | None, again: bool = False) -> None:
    """Send the news (bounded: FLUSH_S at most, before the pod goes)."""
    urls = webhook_urls(settings)
    if not urls:
        return
    from trainer.webhooks import dispatcher_for

    dispatcher = dispatcher_for(settings)
    event = "pod.stopping" if error is None else "pod.stop_failed"
    details = {"id": settings.runpod_pod_id, "stopping": error is None, "error": error}
    for url in urls:
        dispatcher.pod_event(url, event, pod_message(settings, error, again), details)
    if not dispatcher.flush(FLUSH_S):
        log.warning("the pod's news (%s) was not delivered within %.0f s", event, FLUSH_S)
