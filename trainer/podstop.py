"""Optional: stop this RunPod pod when the training queue is empty, so an idle GPU costs nothing.

Off by default: STOP_POD_WHEN_IDLE=1 turns it on, and the dashboard's "Stop the pod when the queue is done"
turns it on or off while the pod runs (its choice, kept in the workspace, wins over the setting). Uses the pod's
own RUNPOD_POD_ID and RUNPOD_API_KEY with RunPod's REST API: `POST {RUNPOD_API_URL}/pods/{id}/stop`. Only
/workspace survives a stop, which is where every LoRA is written before this is called.

Every stop asked for is kept in the workspace (LAST_STOP_FILE): the dashboard says when RunPod refused one, and a
stop made by itself is told to WEBHOOK_URL (and the last job's webhook), so a pod left overnight is never still
billing unseen. Never stopped by itself while a file is still being uploaded in chunks, or downloaded (studio.downloads:
the minute's grace counts from the end of the last download too).
"""

from __future__ import annotations

import http.client
import json
import logging
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

from studio.atomic import atomic_write_json, read_json
from studio.pod_price import on_runpod
from studio.settings import Settings
from studio.workspace import Workspace

log = logging.getLogger(__name__)
CHOICE_FILE = "pod-stop.json"  # in the workspace: {"stop_when_idle": true}, the dashboard's choice
LAST_STOP_FILE = "pod-stop-last.json"  # in the workspace: the last stop asked of RunPod and how it went
NOT_RUNPOD = "This is not a RunPod pod (RUNPOD_POD_ID and RUNPOD_API_KEY are not set)"
UPLOAD_QUIET_S = 120.0  # an upload that sent a chunk this recently is still under way
RETRY_DELAYS_S = (3.0, 10.0)  # a stop made by itself is tried again after these when RunPod could not answer
RETRY_LATER_S = 600.0  # a stop RunPod could not take (down, timing out) is asked again this often while all is idle
IDLE_GRACE_S = 60.0  # the worker stops the pod this long after the last work ended (trainer.worker's pod_stop_grace_s)


def stop_when_idle(settings: Settings) -> bool:
    """Whether the pod stops once the queue is done: the dashboard's choice, else STOP_POD_WHEN_IDLE."""
    chosen = read_json(Path(settings.root) / CHOICE_FILE, None)
    if isinstance(chosen, dict) and isinstance(chosen.get("stop_when_idle"), bool):
        return chosen["stop_when_idle"]
    return settings.stop_pod_when_idle


def choose_stop_when_idle(settings: Settings, on: bool) -> None:
    atomic_write_json(Path(settings.root) / CHOICE_FILE, {"stop_when_idle": bool(on)})


def choice_state(settings: Settings) -> dict:
    """What the pages show of the choice: whether the pod can stop itself at all, and whether it will; with
    "stops_in_s" while the worker is about to stop it (the pages count down: unticking the choice keeps it running)."""
    state = {"on_runpod": on_runpod(settings), "auto_stop": stop_when_idle(settings)}
    due = stops_in(settings) if state["auto_stop"] and state["on_runpod"] else None
    return state if due is None else {**state, "stops_in_s": round(due)}


def stops_in(settings: Settings, now: float | None = None) -> float | None:
    """Seconds until the worker stops the pod by itself (0: any moment now), as it decides (trainer.worker): a
    training job ended since the worker started, nothing is queued or running, IDLE_GRACE_S after the last work
    ended (or the last download). None when it will not: the choice is off, work is under way, a stop was asked since,
    a file is being uploaded or downloaded, the last LoRA is not whole on disk."""
    from studio.jobs import ACTIVE, JobStore

    if pod_stop_configured(settings) is not None:
        return None
    streaming, download_ended = downloads(settings)
    if streaming:
        return None
    try:
        store = JobStore(Workspace(settings.root).db_path)
        if store.count(ACTIVE, work=True):
            return None
        trained = [job for job in store.list(kind="train", limit=5) if job.finished_at]
        ends = [job.finished_at for job in store.list(limit=50) if job.finished_at]
        starts = [worker["started_at"] for worker in store.workers()]
    except (sqlite3.Error, OSError) as exc:
        log.warning("could not read the job store: %s", exc)
        return None
    if not trained or not starts:
        return None
    last = max(trained, key=lambda job: job.finished_at)
    asked = last_stop(settings)
    if last.finished_at < min(starts) or (asked and asked["at"] >= last.finished_at):
        return None  # trained before the worker started (it forgot), or its stop was asked already
    if last.status == "completed" and not lora_is_safe(last.lora_path):
        return None
    last_work = max(ends + ([download_ended] if download_ended else []))
    return max(0.0, last_work + IDLE_GRACE_S - (time.time() if now is None else now))


def choose_from_request(settings: Settings, body: dict) -> dict:
    """A page's {"on": true|false} made the choice (the dashboard's, Express's); ApiError with a sentence for
    anything else, or away from RunPod. Returns choice_state."""
    from studio.web import ApiError, json_flag

    on = json_flag(body, "on", default=None)
    if not on_runpod(settings):
        raise ApiError(f"{NOT_RUNPOD}: it cannot stop itself.", 409)
    choose_stop_when_idle(settings, on)
    return choice_state(settings)


def pod_stop_configured(settings: Settings) -> str | None:
    """None when the pod may stop by itself now (the worker asks while its queue is done); otherwise why not."""
    if not stop_when_idle(settings):
        return "stopping the pod when idle is off (STOP_POD_WHEN_IDLE, or the dashboard's choice)"
    if not on_runpod(settings):
        return "RUNPOD_POD_ID and RUNPOD_API_KEY are needed to stop the pod (RunPod sets them on a pod)"
    return upload_under_way(settings)


def upload_under_way(settings: Settings, now: float | None = None) -> str | None:
    """A sentence while a file is being uploaded in chunks (a dataset's ZIP, a LoRA for the library): no job exists
    for it until its last chunk is in, and a stop would lose what was sent. None otherwise."""
    from studio.chunked import last_activity

    latest = last_activity(Workspace(settings.root).uploads, {})
    ago = (time.time() if now is None else now) - latest if latest else None
    if ago is None or ago > UPLOAD_QUIET_S:
        return None
    return f"A file is still being uploaded (a part of it arrived {max(0, round(ago))} s ago): let it finish first."


def downloads(settings: Settings) -> tuple[list[str], float | None]:
    """(files being downloaded from the pod now, when the last download ended): studio.downloads."""
    from studio import downloads as held

    try:
        return held.under_way(Workspace(settings.root).state)
    except OSError as exc:
        log.warning("could not read the downloads under way: %s", exc)
        return [], None


def download_under_way(settings: Settings) -> str | None:
    """A sentence while a file is being downloaded from the pod (the Stop button waits for it); None otherwise."""
    from studio.downloads import sentence

    return sentence(downloads(settings)[0])


def lora_is_safe(path: str | Path | None) -> bool:
    """The finished LoRA is a complete, non-empty safetensors file on the persistent disk."""
    if not path:
        return True  # the last job made no LoRA (failed or stopped): nothing to wait for
    try:
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            return 0 < header_len < 100_000_000 and Path(path).stat().st_size > 8 + header_len
    except OSError:
        return False


def stop_pod(settings: Settings, timeout_s: float = 20.0, *, by: str = "auto",
             retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S, later: bool = False) -> bool:
    """Ask RunPod to stop this pod; True when the API accepted. `by`: "auto" (the queue is done: tried again when
    RunPod could not answer, and told to the webhooks) or "button" (someone is at the page: once). What came of it
    is kept in the workspace for the dashboard (last_stop), with "lasting" when asking again cannot help (a refused
    key); the worker asks again every RETRY_LATER_S otherwise (`later`: such a try, told to the webhooks only when
    it worked: a failure said once is not said again every ten minutes all night)."""
    delays = retry_delays_s if by == "auto" else ()
    for attempt in range(len(delays) + 1):
        error, lasting = _ask_runpod(settings, timeout_s)
        if error is None or lasting or attempt == len(delays):
            break
        log.warning("RunPod did not stop pod %s (%s); asking again in %.0f s", settings.runpod_pod_id, error,
                    delays[attempt])
        time.sleep(delays[attempt])
        if _work_arrived(settings):  # queued meanwhile: a pod is never stopped under work
            log.info("not asking RunPod again: work was queued meanwhile")
            return False
    _keep(settings, {"at": time.time(), "ok": error is None, "by": by, "error": error, "lasting": bool(lasting)})
    if by == "auto" and not (later and error is not None):
        from trainer.pod_notices import tell_webhooks

        tell_webhooks(settings, error, again=not lasting)
    return error is None


def _work_arrived(settings: Settings) -> bool:
    from studio.jobs import ACTIVE, JobStore

    try:
        return JobStore(Workspace(settings.root).db_path).count(ACTIVE, work=True) > 0
    except (sqlite3.Error, OSError) as exc:
        log.warning("could not read the job store: %s", exc)
        return False


def last_stop(settings: Settings) -> dict | None:
    """The last stop asked of RunPod: {"at", "ok", "by", "error"} (error: a sentence, None when it was accepted)."""
    found = read_json(Path(settings.root) / LAST_STOP_FILE, None)
    return found if isinstance(found, dict) and isinstance(found.get("at"), int | float) else None


def _keep(settings: Settings, record: dict) -> None:
    try:
        atomic_write_json(Path(settings.root) / LAST_STOP_FILE, record)
    except OSError as exc:  # a full disk: the log still says it
        log.warning("could not keep the pod stop's outcome: %s", exc)


def _ask_runpod(settings: Settings, timeout_s: float) -> tuple[str | None, bool]:
    """(None, _) when RunPod accepted the stop; else (a sentence, whether asking again cannot help)."""
    url = f"{settings.runpod_api_url.rstrip('/')}/pods/{settings.runpod_pod_id}/stop"
    headers = {"Authorization": f"Bearer {settings.runpod_api_key}", "Content-Type": "application/json"}
    try:
        request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(4096)  # the pod as RunPod describes it, its environment too: never logged
            log.info("asked RunPod to stop pod %s: HTTP %s", settings.runpod_pod_id, response.status)
            if 200 <= response.status < 300:
                return None, True
            return f"RunPod answered HTTP {response.status}", False
    except urllib.error.HTTPError as exc:
        detail = _without_key(_said(_body_of(exc)), settings)[:200].strip()
        log.error("RunPod refused to stop pod %s: HTTP %s %s", settings.runpod_pod_id, exc.code, detail)
        said = f"RunPod answered HTTP {exc.code}{f' ({detail})' if detail else ''}"
        return said, exc.code < 500 and exc.code not in (408, 429)
    except (urllib.error.URLError, OSError) as exc:
        reason = _without_key(str(getattr(exc, "reason", exc)), settings)
        log.error("could not reach RunPod to stop pod %s: %s", settings.runpod_pod_id, reason)
        return f"RunPod could not be reached ({reason})", False
    except (ValueError, http.client.InvalidURL) as exc:  # RUNPOD_API_URL is not a web address: asking again cannot help
        log.error("could not ask RunPod to stop pod %s: %s", settings.runpod_pod_id, exc)
        return (f"RUNPOD_API_URL ({settings.runpod_api_url[:80]}) is not a web address: set it to "
                "https://rest.runpod.io/v1, or leave it unset"), True
    except http.client.HTTPException as exc:  # an answer cut short, or not HTTP (a proxy's page): a later try may do
        reason = _without_key(str(exc).strip() or type(exc).__name__, settings)[:200]
        log.error("RunPod's answer to stopping pod %s could not be read: %s", settings.runpod_pod_id, reason)
        return f"RunPod's answer could not be read ({reason})", False


def _body_of(error: urllib.error.HTTPError) -> str:
    """The start of a refusal's body; "" when it cannot be read (cut short, timed out): its code still says it."""
    try:
        return error.read(500).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""


def _said(body: str) -> str:
    """What RunPod's error answer says: its "error" (or "message"); an answer that is not JSON, as it is, on one line;
    nothing from a web page (a gateway's "502 Bad Gateway" HTML: its code says it, its markup would not)."""
    try:
        found = json.loads(body)
    except ValueError:
        return "" if body.lstrip().startswith("<") else " ".join(body.split())
    if isinstance(found, dict):
        return str(found.get("error") or found.get("message") or "")
    return str(found)


def _without_key(text: str, settings: Settings) -> str:
    key = settings.runpod_api_key
    return text.replace(key, "[RUNPOD_API_KEY]") if key else text
