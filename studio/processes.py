"""Whether a process recorded in a status file or the job store is still running."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable


def pid_alive(pid) -> bool:
    """True while `pid` runs (also when it belongs to another user); a zombie counts as dead."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _start_ticks(pid: int) -> str | None:
    """When `pid` started, in clock ticks since boot (Linux); None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def machine() -> str:
    """This machine's name: the pod's id on RunPod (the same across its restarts), else the host name."""
    return os.environ.get("RUNPOD_POD_ID") or socket.gethostname()


def process_token(pid: int | None = None) -> str:
    """'pid:start@machine' names one process for good: a pid reused after a restart has another start time, and
    the same pid on another pod sharing the volume (studio.host_claim) is another machine's."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_ticks(pid) or ''}@{machine()}"


def token_machine(token: str | None) -> str | None:
    """The machine a token names; None for one written before tokens named it (this machine's)."""
    return str(token).rsplit("@", 1)[1] if "@" in str(token) else None


def token_pid(token: str | None) -> int | None:
    try:
        return int(str(token).split(":", 1)[0])
    except ValueError:
        return None


def token_alive(token: str | None, machine_alive: Callable[[str], bool] | None = None) -> bool:
    """True while the process named by `token` runs (a token without a start time checks the pid only). Another
    machine's process cannot be looked at from here: it counts as running while `machine_alive(name)` says that
    machine is (studio.host_claim.seen), and always without it, so nothing of another pod's is ever ended."""
    where = token_machine(token)
    if where is not None and where != machine():
        return True if machine_alive is None else machine_alive(where)
    local = str(token).rsplit("@", 1)[0]
    pid = token_pid(local)
    if not pid_alive(pid):
        return False
    start = local.split(":", 1)[1] if ":" in local else ""
    return not start or _start_ticks(pid) in (None, start)


def describe_exit(returncode: int) -> str:
    """How a child process ended, as the rest of a sentence: "was killed (SIGKILL), most often because ..."."""
    if returncode < 0 or returncode in (137, 139, 134):
        number = -returncode if returncode < 0 else returncode - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL:
            return f"was killed ({name}), most often because the machine ran out of memory"
        if number == signal.SIGSEGV:
            return f"crashed ({name})"
        return f"was ended by {name}"
    return f"exited with code {returncode}"
