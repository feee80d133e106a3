"""Whether a process recorded in a status file or the job store is still running."""

from __future__ import annotations

import os


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
