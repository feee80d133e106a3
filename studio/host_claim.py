"""Which machine runs the studio on this workspace, so that two pods on one network volume are seen, not silent.

A network volume can be attached to more than one pod: two studios on it would share one job database over a network
file system, both workers would take the same queued job, and each would sweep the other's uploads. The worker
refreshes its file in CLAIMS, in the workspace's state folder, every REFRESH_S with this machine's name (the pod's id on
RunPod, else the host name), one file per machine; every page says so while another machine's claim is fresh
(studio.web).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from studio.atomic import atomic_write_json, read_json

log = logging.getLogger(__name__)
CLAIMS = "machines"  # under the state folder: <hash of the machine name>.json
REFRESH_S = 30.0
FRESH_S = 90.0  # a claim refreshed this recently is a studio running now


def machine() -> str:
    """This machine's name: the pod's id on RunPod (the same across its restarts), else the host name."""
    return os.environ.get("RUNPOD_POD_ID") or socket.gethostname()


def _file(state: Path, name: str) -> Path:
    return Path(state) / CLAIMS / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"


def claim(state: Path) -> None:
    target = _file(state, machine())
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(target, {"machine": machine(), "pid": os.getpid(), "at": time.time()})
    except OSError as exc:
        log.warning("could not note this machine in %s: %s", state, exc)


def other(state: Path, now: float | None = None) -> tuple[str, float] | None:
    """(another machine's name, seconds since it was last seen) while another machine runs a studio on this
    workspace; None otherwise."""
    now, me = time.time() if now is None else now, machine()
    folder = Path(state) / CLAIMS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        found = read_json(path, None)
        if not isinstance(found, dict) or not isinstance(found.get("at"), int | float):
            continue
        name, ago = str(found.get("machine") or "?"), now - found["at"]
        if name != me and ago < FRESH_S:
            return name, max(0.0, ago)
    return None


def keep(state: Path, stop: threading.Event) -> threading.Thread:
    """Claims the workspace now and every REFRESH_S until `stop` is set (the worker's thread); says so in the log
    when another machine's claim was fresh first."""
    found = other(state)
    if found is not None:
        log.error("another machine (%s, seen %.0f s ago) runs a studio on this workspace too: stop one of them",
                  *found)

    claim(state)

    def loop() -> None:
        while not stop.wait(REFRESH_S):
            claim(state)

    thread = threading.Thread(target=loop, name="host-claim", daemon=True)
    thread.start()
    return thread


def sentence(state: Path) -> str | None:
    found = other(state)
    if found is None:
        return None
    return (f"Another machine ({found[0]}) runs a studio on this workspace too (seen {found[1]:.0f} s ago): two "
            "studios on one volume take the same jobs and overwrite each other's files. Stop one of the pods, or "
            "give each its own volume.")
