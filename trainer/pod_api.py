"""The pod itself, for the dashboard: how long its GPU has had nothing to do and what that cost, and, on RunPod,
a button that stops the pod, so that a finished session stops billing in one click instead of a trip to RunPod's
console (or an hour forgotten). STOP_POD_WHEN_IDLE does the same by itself once the queue is empty.

    GET  /api/pod             -> {"price", "price_pending", "busy", "idle_since", "idle_s", "can_stop", "why_not",
                                  "on_runpod", "auto_stop", "last_stop"}
                                 last_stop: the last stop asked of RunPod {"at", "ok", "by", "error"}, or None
    POST /api/pod/stop        -> 202 {"stopping": true}; 409 {"error": why not, "details": []}; 502 when RunPod refused
    PUT  /api/pod/auto-stop   {"on": true} -> {"on_runpod", "auto_stop"}: stop the pod by itself once the queue is done

Nothing runs means no job of any kind (training, Try the LoRA's renders, captioning, imports, exports) is
queued or running; idle since is when the last one ended, or when the worker started (the pod's boot).
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify

from studio.web import ApiError, json_body
from trainer import podstop
from trainer.jobs_api import price, settings, store

bp = Blueprint("pod", __name__)
ACTIVE = ("queued", "running")


def _busy() -> int:
    return store().count(ACTIVE, work=True)


def _idle_since() -> float | None:
    """When the pod last had work: the end of its latest job, or its worker's start (None when unknown)."""
    ends = [job.finished_at for job in store().list(limit=50) if job.finished_at]
    starts = [worker["started_at"] for worker in store().workers()]
    moments = ends + ([min(starts)] if starts else [])
    return max(moments) if moments else None


def _why_not_stop(busy: int) -> str | None:
    """None when the pod may be stopped now; otherwise why not, in a sentence."""
    current = settings()
    if not podstop.on_runpod(current):
        return f"{podstop.NOT_RUNPOD}: stop the machine where you rent it."
    if busy:
        return (f"{'A job is' if busy == 1 else f'{busy} jobs are'} queued or running: let "
                f"{'it' if busy == 1 else 'them'} end, or stop {'it' if busy == 1 else 'them'}, first.")
    transfer = podstop.upload_under_way(current) or podstop.download_under_way(current)
    if transfer:
        return transfer
    finished = store().list(("completed",), kind="train", limit=1)
    if finished and not podstop.lora_is_safe(finished[0].lora_path):
        return f"The last LoRA ({finished[0].lora_path}) is not complete on disk: look at it before stopping the pod."
    return None


@bp.get("/api/pod")
def pod_state():
    busy = _busy()
    since, why_not = None if busy else _idle_since(), _why_not_stop(busy)
    shown, pending = price(), current_app.extensions["pod_price"].pending
    if shown is None and not pending:  # RunPod's answer came between the two looks: the page would wait 30 s for it
        shown = price()
    return jsonify({"price": shown, "price_pending": pending,
                    "busy": busy, "idle_since": since,
                    "idle_s": round(time.time() - since, 1) if since else None, "can_stop": why_not is None,
                    "why_not": why_not, "last_stop": podstop.last_stop(settings()), **podstop.choice_state(settings())})


@bp.post("/api/pod/stop")
def stop_pod():
    why_not = _why_not_stop(_busy())
    if why_not:
        raise ApiError(why_not, 409)
    if not podstop.stop_pod(settings(), by="button"):
        said = (podstop.last_stop(settings()) or {}).get("error") or "RunPod did not answer"
        raise ApiError(f"The pod did not stop: {said}. It is still running: stop it from RunPod's console.", 502)
    return jsonify({"stopping": True}), 202


@bp.put("/api/pod/auto-stop")
def auto_stop():
    """The dashboard's "Stop the pod when the queue is done": kept in the workspace, read by the worker."""
    return jsonify(podstop.choose_from_request(settings(), json_body()))
