"""What runpod_start.sh asks before and after it starts supervisord: `python -m studio.start_checks [--announce]`.

- Before (no option): the studio is not running already for this workspace, and the ports it serves on are free.
  Either fault is one sentence and exit 1, instead of supervisord's own words (a second start read as "another
  program is listening on a port", a port taken by another program as a service restarting every few seconds
  while the browser showed the other program).
- `--announce` (in the background once supervisord runs): waits until the three services answer, then prints
  where to go, what demo mode is and how to stop, as the last lines in the terminal.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

from studio.processes import pid_alive
from studio.settings import Settings, SettingsError, load_settings

ANNOUNCE_WAIT_S = 600.0


def services(settings: Settings) -> list[tuple[str, str, int]]:
    """(what, host it binds, port) of each service supervisord starts."""
    return [("the dataset manager", settings.host, settings.port),
            ("the trainer", settings.host, settings.trainer_port),
            ("the caption service", settings.qwen_host, settings.qwen_port)]


def running_pid(run_dir: Path) -> int | None:
    """The pid of this workspace's supervisord when it still runs (its pidfile in STUDIO_RUN_DIR)."""
    try:
        pid = int((run_dir / "supervisord.pid").read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes() if Path("/proc").is_dir() else b"supervisord"
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    if command and b"supervisord" not in command:  # a pid of an earlier boot, reused by another program
        return None
    return pid


def port_taken(host: str, port: int) -> bool:
    """Whether binding `host:port` fails because something listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: a TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check(settings: Settings, run_dir: Path) -> str | None:
    """Why the studio cannot start now, in one sentence; None when it can."""
    pid = running_pid(run_dir)
    if pid is not None:
        venv = os.environ.get("STUDIO_VENV") or ".venv"  # /opt/studio-venv on a pod
        return (f"The studio is already running for {settings.root} (supervisord, pid {pid}): open "
                f"http://localhost:{settings.port} and http://localhost:{settings.trainer_port}. Stop it with Ctrl+C "
                f"in its terminal, or: {venv}/bin/python -m studio.supervisor_env ctl shutdown")
    taken = [(what, port) for what, host, port in services(settings) if port_taken(host, port)]
    if taken:
        names = ", ".join(f"{port} ({what})" for what, port in taken)
        return (f"{'Port' if len(taken) == 1 else 'Ports'} {names} {'is' if len(taken) == 1 else 'are'} taken by "
                f"another program. Stop {'it' if len(taken) == 1 else 'them'}, or start the "
                "studio on other ports, e.g. PORT=3100 TRAINER_PORT=8775 QWEN_PORT=11535 bash scripts/run.sh")
    return None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def announce(settings: Settings, wait_s: float = ANNOUNCE_WAIT_S, out=sys.stdout, while_pid: int | None = None) -> bool:
    """Once every service answers (within `wait_s`), where to go and how to stop; False when one never did, or
    when `while_pid` (supervisord) ended first."""
    deadline = time.monotonic() + wait_s
    while not all(_answers(port) for _what, _host, port in services(settings)):
        if while_pid is not None and not pid_alive(while_pid):  # (a zombie not yet reaped counts as ended)
            return False
        if time.monotonic() > deadline:
            print(f"[start] not every service answers after {wait_s:.0f} s: see {settings.root}/logs", file=out)
            return False
        time.sleep(1)
    demo = (" Demo mode: tiny local models stand in for the real ones (no GPU, or no model hub), so every tool "
            "works but pictures and captions are noise.") if settings.demo else ""
    print(f"\n[start] The studio is ready.{demo}\n"
          f"[start]   datasets  http://localhost:{settings.port}\n"
          f"[start]   trainer   http://localhost:{settings.trainer_port}\n"
          f"[start] Ctrl+C stops every service (a training job saves a checkpoint and goes on at the next start).\n",
          file=out, flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.start_checks", description=__doc__.splitlines()[0])
    parser.add_argument("--announce", action="store_true", help="wait for the services, then say where to go")
    parser.add_argument("--while-pid", type=int, help="with --announce: give up when this process (supervisord) ends")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.announce:
        return 0 if announce(settings, while_pid=args.while_pid) else 1
    problem = check(settings, Path(os.environ.get("STUDIO_RUN_DIR") or "/nonexistent"))
    if problem:
        print(f"[start] {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
