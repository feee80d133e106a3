"""gunicorn's server hooks for the studio's web services (studio.serve passes this module as its config).

A worker ends with its master. Killed with -9 (the OOM killer, a hand that meant to stop it), the master cannot stop
its workers, and one left behind keeps the port for its last requests: the service started again in its place
cannot bind it and gives up, and then nothing serves at all. The kernel ends the worker instead (Linux's parent-death
signal), as a graceful stop would.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def post_fork(server, worker) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no such signal, the old behaviour
        return
    if os.getppid() != server.pid:  # the master died between the fork and the call
        os.kill(os.getpid(), signal.SIGTERM)
