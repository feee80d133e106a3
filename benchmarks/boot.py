"""Boot time: how long until the studio's three pages answer 200.

    python benchmarks/boot.py [--runs 3]

1. supervisord start -> dataset manager page, trainer page and caption service health all answer 200
   (goal: under 15 s).
2. `runpod_start.sh` on an already-installed workspace (the venv exists, nothing to install) -> the same
   (goal: under 60 s). That path also runs the idempotent install check.

Each run uses a fresh temporary STUDIO_ROOT, free ports and demo mode; the figures are medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from studio import supervisor_env  # noqa: E402

GOALS = {"supervisord": 15.0, "runpod_start.sh": 60.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def base_env(root: Path) -> tuple[dict, list[str]]:
    ports = {"PORT": free_port(), "QWEN_PORT": free_port(), "TRAINER_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1", "HOST": "127.0.0.1", "HF_HUB_OFFLINE": "1",
                "STUDIO_RUN_DIR": str(root.parent / f"{root.name}-run")})
    urls = [f"http://127.0.0.1:{ports['PORT']}/", f"http://127.0.0.1:{ports['TRAINER_PORT']}/",
            f"http://127.0.0.1:{ports['QWEN_PORT']}/health"]
    return env, urls


def time_until_ready(command: list[str], env: dict, urls: list[str], log: Path, timeout: float = 180.0) -> float:
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        pending = list(urls)
        while pending:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}; see {log}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not ready after {timeout} s: {pending}; see {log}")
            pending = [url for url in pending if not answers_200(url)]
            if pending:
                time.sleep(0.05)
        return time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)  # supervisord (runpod_start.sh execs into it) stops every program
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def bench_supervisord(tmp: Path, index: int) -> float:
    root = tmp / f"supervisord-{index}"
    env, urls = base_env(root)
    env = supervisor_env.prepare(env, python=sys.executable)
    return time_until_ready(supervisor_env.supervisord_command(env), env, urls, tmp / f"supervisord-{index}.log")


def bench_runpod_start(tmp: Path, index: int, venv: Path) -> float:
    root = tmp / f"runpod-{index}"
    env, urls = base_env(root)
    env["STUDIO_VENV"] = str(venv)
    return time_until_ready(["bash", "runpod_start.sh", "--demo"], env, urls, tmp / f"runpod-{index}.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--venv", type=Path, default=Path(sys.executable).parent.parent,
                        help="an installed venv for runpod_start.sh (default: this python's)")
    args = parser.parse_args()
    results: dict[str, list[float]] = {"supervisord": [], "runpod_start.sh": []}
    with tempfile.TemporaryDirectory(prefix="boot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for index in range(args.runs):
            results["supervisord"].append(bench_supervisord(tmp, index))
            results["runpod_start.sh"].append(bench_runpod_start(tmp, index, args.venv))
    print(f"boot time until all three pages answer 200 (median of {args.runs}, demo mode, fresh STUDIO_ROOT)")
    for name, times in results.items():
        median = statistics.median(times)
        verdict = "ok" if median < GOALS[name] else "OVER GOAL"
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"  {name:<16} {median:5.1f} s   goal < {GOALS[name]:.0f} s  {verdict}   runs: {runs}")
    ratio = statistics.median(results["runpod_start.sh"]) / statistics.median(results["supervisord"])
    print(f"  runpod_start.sh / supervisord ratio: {ratio:.2f} (the difference is the install check)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
