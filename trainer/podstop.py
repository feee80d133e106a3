"""Optional: stop this RunPod pod when the training queue is empty, so an idle GPU costs nothing.

Off by default: STOP_POD_WHEN_IDLE=1 turns it on, and the dashboard's "Stop the pod when the queue is done"
turns it on or off while the pod runs (its choice, kept in the workspace, wins over the setting). Uses the pod's
own RUNPOD_POD_ID and RUNPOD_API_KEY with RunPod's REST API: `POST {RUNPOD_API_URL}/pods/{id}/stop`. Only
/workspace survives a stop, which is where every LoRA is written before this is called.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

from studio.atomic import atomic_write_json, read_json
from studio.pod_price import on_runpod
from studio.settings import Settings

log = logging.getLogger(__name__)
CHOICE_FILE = "pod-stop.json"  # in the workspace: {"stop_when_idle": true}, the dashboard's choice
NOT_RUNPOD = "This is not a RunPod pod (RUNPOD_POD_ID and RUNPOD_API_KEY are not set)"


def stop_when_idle(settings: Settings) -> bool:
    """Whether the pod stops once the queue is done: the dashboard's choice, else STOP_POD_WHEN_IDLE."""
    chosen = read_json(Path(settings.root) / CHOICE_FILE, None)
    if isinstance(chosen, dict) and isinstance(chosen.get("stop_when_idle"), bool):
        return chosen["stop_when_idle"]
    return settings.stop_pod_when_idle


def choose_stop_when_idle(settings: Settings, on: bool) -> None:
    atomic_write_json(Path(settings.root) / CHOICE_FILE, {"stop_when_idle": bool(on)})


def choice_state(settings: Settings) -> dict:
    """What the pages show of the choice: whether the pod can stop itself at all, and whether it will."""
    return {"on_runpod": on_runpod(settings), "auto_stop": stop_when_idle(settings)}


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
    """None when the pod may be stopped; otherwise why not (for logs and the dashboard)."""
    if not stop_when_idle(settings):
        return "stopping the pod when idle is off (STOP_POD_WHEN_IDLE, or the dashboard's choice)"
    if not on_runpod(settings):
        return "RUNPOD_POD_ID and RUNPOD_API_KEY are needed to stop the pod (RunPod sets them on a pod)"
    return None


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


def stop_pod(settings: Settings, timeout_s: float = 20.0) -> bool:
    """Ask RunPod to stop this pod; True when the API accepted."""
    url = f"{settings.runpod_api_url.rstrip('/')}/pods/{settings.runpod_pod_id}/stop"
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={
        "Authorization": f"Bearer {settings.runpod_api_key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read(4096)
            log.info("asked RunPod to stop pod %s: HTTP %s %s", settings.runpod_pod_id, response.status,
                     body[:200].decode("utf-8", "replace"))
            return 200 <= response.status < 300
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        log.error("RunPod refused to stop pod %s: HTTP %s %s", settings.runpod_pod_id, exc.code, detail)
    except (urllib.error.URLError, OSError) as exc:
        log.error("could not reach RunPod to stop pod %s: %s", settings.runpod_pod_id, exc)
    return False
