"""Which machine runs the studio on this workspace, so that two pods on one network volume are seen, not silent.

A network volume can be attached to more than one pod: two studios on it would share one job database over a network
file system, both workers would take the same queued job, and each would sweep the other's uploads. The worker
refreshes its file in CLAIMS, in the workspace's state folder, every REFRESH_S with this machine's name (the pod's id on
RunPod, else the host name), one file per machine; every page says so while another machine's claim is fresh
(studio.web). Of the machines claiming it, the one that came first leads: only its worker starts queued jobs (the
other's pages still queue them, and watch them run), and a job held by another machine's process counts as running
while that machine's claim is fresh (studio.processes.token_alive), so neither pod ends or takes the other's work.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from studio.atomic import atomic_write_json, read_json
from studio.processes import machine

log = logging.getLogger(__name__)
CLAIMS = "machines"  # under the state folder: <hash of the machine name>.json
REFRESH_S = 30.0
FRESH_S = 90.0  # a claim refreshed this recently is a studio running now


def _file(state: Path, name: str) -> Path:
    return Path(state) / CLAIMS / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"


def _fresh(found, now: float) -> bool:
    return isinstance(found, dict) and isinstance(found.get("at"), int | float) and now - found["at"] < FRESH_S


def claim(state: Path) -> None:
    """Notes this machine as running a studio here; since when stays while the note is fresh (a worker restarted by
    supervisord keeps its machine's place)."""
    target, now = _file(state, machine()), time.time()
    try:
        before = read_json(target, None)
        since = before.get("since") if _fresh(before, now) else None
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(target, {"machine": machine(), "pid": os.getpid(), "at": now,
                                   "since": since if isinstance(since, int | float) else now})
    except OSError as exc:
        log.warning("could not note this machine in %s: %s", state, exc)


def _claims(state: Path, now: float) -> list[dict]:
    """The fresh claims, the first-come first (a claim without `since` came at its `at`)."""
    folder, found = Path(state) / CLAIMS, []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        one = read_json(path, None)
        if _fresh(one, now):
            since = one.get("since")
            found.append({"machine": str(one.get("machine") or "?"), "at": one["at"],
                          "since": since if isinstance(since, int | float) else one["at"]})
    return sorted(found, key=lambda one: (one["since"], one["machine"]))


def other(state: Path, now: float | None = None) -> tuple[str, float] | None:
    """(another machine's name, seconds since it was last seen) while another machine runs a studio on this
    workspace (the one leading first); None otherwise."""
    now, me = time.time() if now is None else now, machine()
    for one in _claims(state, now):
        if one["machine"] != me:
            return one["machine"], max(0.0, now - one["at"])
    return None


def seen(state: Path, name: str, now: float | None = None) -> bool:
    """Whether machine `name` runs a studio on this workspace now (its claim is fresh)."""
    now = time.time() if now is None else now
    return any(one["machine"] == name for one in _claims(state, now))


def leader(state: Path, now: float | None = None) -> str | None:
    """Another machine that claimed this workspace before this one and still runs: this machine's worker starts no
    jobs while it does. None when this machine leads (or is alone, or has not claimed yet and no one else has)."""
    claims = _claims(state, time.time() if now is None else now)
    first = claims[0]["machine"] if claims else None
    return first if first not in (None, machine()) else None


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
    said = f"Another machine ({found[0]}) runs a studio on this workspace too (seen {found[1]:.0f} s ago). "
    if leader(state) == found[0]:
        said += (f"It was here first, so jobs queued on this pod run on {found[0]}; this pod starts none while it "
                 "runs. ")
    else:
        said += f"This pod was here first and runs the queued jobs; {found[0]} starts none while this one runs. "
    return said + ("Two studios on one volume still share every file: stop one of the pods, or give each its own "
                   "volume.")
