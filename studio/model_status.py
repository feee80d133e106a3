"""What the pages say about model downloads, read from the status file the fetcher writes.

`banners(settings)` gives the page banner ("Downloading models: Z-Image-Turbo 63% (1.2 GB/s, ETA 3 min)")
until every model is ready; `download_state(settings, key)` lets a feature that needs a missing model say
"downloading, 63%" instead of failing.
"""

from __future__ import annotations

import time

from studio.atomic import read_json
from studio.processes import pid_alive
from studio.settings import Settings
from studio.workspace import Workspace

ACTIVE = {"pending", "resolving", "downloading", "verifying", "building"}
STALE_AFTER_S = 120.0
START_FETCH = "python -m studio.supervisor_env ctl start fetch"  # starts the fetcher again, as the banners say


def read_status(settings: Settings) -> dict | None:
    data = read_json(Workspace(settings.root).model_status_file)
    return data if isinstance(data, dict) else None


def format_bytes(count: float) -> str:
    """As the pages write sizes (studio.js formatBytes): 1000-based, one decimal under 10, none above."""
    units = ("B", "KB", "MB", "GB", "TB")
    index = 0
    while abs(count) >= 1000 and index < len(units) - 1:
        count /= 1000
        index += 1
    return f"{count:.{1 if abs(count) < 10 and index else 0}f} {units[index]}"


def format_eta(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 60:
        return "<1 min"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def format_wait(seconds: float) -> str:
    """How long nothing happened: '45 s', '3 min', '1 h 5 min'."""
    if seconds < 60:
        return f"{round(seconds)} s"
    return format_eta(seconds)


def _percent(entry: dict) -> str:
    """The entry's percent as a whole number; a status file written by hand or cut short never shows 'nan%'."""
    value = entry.get("percent")
    if not isinstance(value, (int, float)) or value != value:
        return "0"
    return f"{min(100.0, max(0.0, value)):.0f}"


def _stalled(status: dict) -> bool:
    """The fetcher stopped writing and its process is gone, yet the file still says 'downloading'."""
    updated = status.get("updated_at")
    return (status.get("state") == "downloading" and isinstance(updated, (int, float))
            and time.time() - updated > STALE_AFTER_S and not pid_alive(status.get("pid")))


def describe(entry: dict) -> str:
    """'Z-Image-Turbo 63% (1.2 GB/s, ETA 3 min)', 'Z-Image-Turbo waiting', ..."""
    name = entry.get("name") or entry.get("key", "model")
    state = entry.get("state")
    if state == "downloading":
        details = [part for part in (
            f"{format_bytes(entry['speed_bps'])}/s" if entry.get("speed_bps") else None,
            f"ETA {format_eta(entry.get('eta_s'))}" if entry.get("eta_s") is not None else None,
            f"stalled, no data for {format_wait(entry['stalled_s'])}; it reconnects by itself"
            if entry.get("stalled_s") else None,
        ) if part]
        text = f"{name} {_percent(entry)}%"
        return f"{text} ({', '.join(details)})" if details else text
    if state == "building":
        return f"{name} building"
    if state == "verifying":
        return f"{name} verifying"
    if state == "ready":
        return f"{name} ready"
    if state == "error":
        return f"{name} failed"
    return f"{name} waiting"


def banners(settings: Settings) -> list[dict]:
    """Banners for the page: progress while models download, the cause when a download failed."""
    status = read_status(settings)
    if status is None:
        return []
    if status.get("error") and not status.get("models"):
        return [{"level": "error", "id": "models-error",
                 "text": f"Model download cannot start: {status['error']} Correct the file, then run "
                         f"`{START_FETCH}` in the studio folder (or restart the pod)."}]
    models = [m for m in status.get("models", []) if isinstance(m, dict)]
    out = []
    failed = [m for m in models if m.get("state") == "error" and not m.get("retrying")]
    if failed:
        reasons = " ".join(m.get("error") or describe(m) for m in failed)
        out.append({"level": "error", "id": "models-error",
                    "text": f"Model download failed: {reasons} To try again, restart the pod or run "
                            f"`{START_FETCH}` in the studio folder."})
    retrying = [m for m in models if m.get("state") == "error" and m.get("retrying")]
    if retrying:
        reasons = " ".join(m.get("error") or describe(m) for m in retrying)
        out.append({"level": "warn", "id": "models-retry",
                    "text": f"Model download interrupted: {reasons} It retries by itself in a minute."})
    active = [m for m in models if m.get("state") in ACTIVE]
    if active and _stalled(status):
        out.append({"level": "error", "id": "models",
                    "text": f"Model download stopped unexpectedly: restart the pod or run `{START_FETCH}` in the "
                            "studio folder."})
    elif active:
        prefix = "Preparing demo models" if status.get("demo") else "Downloading models"
        out.append({"level": "info", "id": "models", "text": f"{prefix}: " + ", ".join(describe(m) for m in active)})
    return out


def waiting_for(settings: Settings, needs) -> str | None:
    """What work needing `needs` ((key, label) pairs) waits for while one is still downloading, or retrying a
    failed download: "Waiting for the caption model: downloading, 40% (ETA 2 min)." None when nothing is
    worth waiting for: every model ready, or a download failed for good or stopped (the work then starts and
    fails with that reason)."""
    for key, label in needs:
        state = download_state(settings, key)
        if worth_waiting(state):
            return f"Waiting for the {label}: {state['message']}."
    return None


def worth_waiting(state: dict | None) -> bool:
    """A download_state() still going or retrying a failure (not ready, failed for good, or stopped)."""
    if not state or state["message"] == "download stopped unexpectedly":
        return False
    return state.get("state") in ACTIVE or (state.get("state") == "error" and bool(state.get("retrying")))


def download_state(settings: Settings, key: str) -> dict | None:
    """While one model ('caption', 'zimage', 'adapter', or its folder/name) is not ready: its fetcher entry.

    None when the model is ready or the fetcher does not know it (then a missing file is simply missing).
    The dict has the status file's fields (state: pending/resolving/downloading/verifying/building/error,
    percent, bytes_done, bytes_total, speed_bps, eta_s, error) plus `message`, a short phrase for an error
    reply: "downloading, 63% (ETA 3 min)", "waiting to download", "download failed: ...".
    """
    status = read_status(settings)
    if status is None:
        return None
    for entry in status.get("models", []):
        if isinstance(entry, dict) and key in (entry.get("key"), entry.get("target"), entry.get("name")):
            result = dict(entry)
            state = entry.get("state")
            if state == "ready":
                return None
            if state == "downloading":
                message = f"downloading, {_percent(entry)}%"
                if entry.get("stalled_s"):
                    message += f", stalled (no data for {format_wait(entry['stalled_s'])})"
                elif entry.get("eta_s") is not None:
                    message += f" (ETA {format_eta(entry['eta_s'])})"
            elif state == "building":
                message = "being built (demo mode)"
            elif state == "error":
                message = f"download failed: {entry.get('error') or 'see the fetch log'}"
                if entry.get("retrying"):
                    message += " (retrying)"
            elif state in ACTIVE:
                message = "waiting to download" if state == "pending" else state
            else:
                message = state or "unknown"
            if state in ACTIVE and _stalled(status):
                message = "download stopped unexpectedly"
            result["message"] = message
            return result
    return None
