"""A service that keeps crashing at start comes back by itself once the cause is gone.

supervisord leaves a program FATAL for good after `startretries`; supervisord.conf's [eventlistener:revive] starts it
again after a pause. This runs the real supervisord with that section, as the project's file has it, beside a
program that crashes until a file appears (standing in for a full disk or a missing model at boot).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _listener_section() -> str:
    parser = configparser.RawConfigParser()
    parser.read(REPO / "supervisord.conf")
    assert parser.has_section("eventlistener:revive"), "supervisord.conf has no [eventlistener:revive]"
    lines = [f"{key}={value}" for key, value in parser.items("eventlistener:revive")]
    return "[eventlistener:revive]\n" + "\n".join(lines).replace("%(here)s", str(REPO)) + "\n"


def _status(conf: Path, env: dict) -> str:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(conf), "status", "crasher"], env=env,
                          capture_output=True, text=True, timeout=30).stdout


def _wait_for(conf: Path, env: dict, state: str, timeout_s: float = 90.0) -> str:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = _status(conf, env)
        if state in status:
            return status
        time.sleep(0.3)
    raise AssertionError(f"crasher never became {state}: {status!r}")


def test_a_program_that_went_fatal_is_started_again_once_it_can_start(tmp_path):
    root = tmp_path / "root"
    (root / "logs").mkdir(parents=True)
    run_dir = Path(tempfile.mkdtemp(prefix="qa-revive-"))  # a short path: the unix socket must fit
    cured = tmp_path / "cured"
    script = f"import os, sys, time; os.path.exists({str(cured)!r}) or sys.exit(3); time.sleep(600)"
    crasher = f'{sys.executable} -c "{script}"'
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""\
[supervisord]
nodaemon=true
logfile={root}/logs/supervisord.log
pidfile={run_dir}/supervisord.pid
childlogdir={root}/logs

[unix_http_server]
file={run_dir}/supervisor.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run_dir}/supervisor.sock

[program:crasher]
command={crasher}
autostart=true
autorestart=true
startsecs=1
startretries=1
redirect_stderr=true
stdout_logfile={root}/logs/crasher.log

""" + _listener_section())
    env = {**os.environ, "STUDIO_ROOT": str(root), "STUDIO_PYTHON": sys.executable, "STUDIO_RUN_DIR": str(run_dir),
           "STUDIO_REVIVE_AFTER_S": "1"}
    supervisord = subprocess.Popen([str(BIN / "supervisord"), "-n", "-c", str(conf)], env=env, cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(conf, env, "FATAL")  # supervisord gave up on it, as on a pod whose disk was full at boot
        cured.write_text("the disk has room again")
        _wait_for(conf, env, "RUNNING")
        revive_log = (root / "logs" / "revive.log").read_text()
        assert "crasher kept crashing at start (FATAL)" in revive_log
        assert "starting crasher again" in revive_log
    finally:
        supervisord.terminate()
        supervisord.wait(timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)
