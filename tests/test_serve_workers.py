"""The web services under gunicorn: a worker ends with its master, so a master killed with -9 leaves nothing holding
its port and the service starts again in its place (studio.gunicorn_hooks)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from studio.processes import pid_alive
from tests.helpers import ServerProcess


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_master_killed_with_minus_9_takes_its_workers_along_and_the_port_is_free_again(studio_root):
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9"}
    first = ServerProcess("app", env).start()
    try:
        (worker,) = _children(first.proc.pid)  # the master is the service's own process
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        again = ServerProcess("app", {**env, "PORT": str(first.port)}).start()  # started again at once: it binds
        again.stop()
        for _ in range(50):  # it was sent SIGTERM as its master died, and ends as gracefully as on a stop
            if not pid_alive(worker):
                break
            time.sleep(0.1)
        assert not pid_alive(worker), "the worker outlived its master"
    finally:
        first.stop()
        try:
            os.killpg(first.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_services_make_no_shared_control_socket(studio_root, tmp_path):
    """gunicorn (25.1 and later) opens a control socket at one path per user by default: the dataset manager, the
    trainer and the caption service took the same one in turn, each replacing the last, and a command sent to it
    (gunicornc) reached whichever started last. The studio does not use it: none is made."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"STUDIO_ROOT": str(studio_root), "CAPTION_URL": "http://127.0.0.1:9", "HOME": str(home),
           "XDG_RUNTIME_DIR": ""}
    with ServerProcess("app", env):
        assert not (home / ".gunicorn").exists()
