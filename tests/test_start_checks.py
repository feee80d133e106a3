"""The start's own words for what supervisord said badly: a second start of a running studio, a port another program
holds (before, a service restarting every few seconds while the browser showed the other program), and, once the
services answer, where to go and how to stop."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

from studio import start_checks
from studio.settings import load_settings
from tests.helpers import REPO, free_port


def _settings(tmp_path, **ports):
    env = {"STUDIO_ROOT": str(tmp_path / "root"), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
           **{name: str(port) for name, port in ports.items()}}
    return load_settings(env), env


def _free_ports() -> dict:
    return {name: free_port() for name in ("PORT", "TRAINER_PORT", "QWEN_PORT")}


def test_a_port_another_program_holds_is_named_with_what_to_do(tmp_path):
    ports = _free_ports()
    settings, _env = _settings(tmp_path, **ports)
    assert start_checks.check(settings, tmp_path / "run") is None
    with socket.socket() as other:
        other.bind(("127.0.0.1", ports["PORT"]))
        other.listen()
        problem = start_checks.check(settings, tmp_path / "run")
    assert problem.startswith(f"Port {ports['PORT']} (the dataset manager) is taken by another program.")
    assert "PORT=3100 TRAINER_PORT=8775 QWEN_PORT=11535 bash scripts/run.sh" in problem


def test_a_second_start_says_the_studio_runs_already(tmp_path):
    settings, _env = _settings(tmp_path, **_free_ports())
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "supervisord"])
    try:
        (run / "supervisord.pid").write_text(f"{sleeper.pid}\n")
        problem = start_checks.check(settings, run)
        assert problem.startswith(f"The studio is already running for {settings.root} (supervisord, pid {sleeper.pid})")
        assert "Ctrl+C" in problem and "ctl shutdown" in problem
    finally:
        sleeper.kill()
        sleeper.wait()
    assert start_checks.check(settings, run) is None  # a pidfile left by a process that has ended: no studio runs
    (run / "supervisord.pid").write_text("1\n")  # a pid another program has now (after a reboot)
    assert start_checks.check(settings, run) is None


def test_once_every_service_answers_the_terminal_says_where_to_go_and_how_to_stop(tmp_path):
    ports = _free_ports()
    settings, _env = _settings(tmp_path, **ports)
    listeners = []
    for port in ports.values():
        listener = socket.socket()
        listener.bind(("127.0.0.1", port))
        listener.listen()
        listeners.append(listener)
    out = io.StringIO()
    try:
        assert start_checks.announce(settings, wait_s=10, out=out)
    finally:
        for listener in listeners:
            listener.close()
    said = out.getvalue()
    assert f"http://localhost:{ports['PORT']}" in said and f"http://localhost:{ports['TRAINER_PORT']}" in said
    assert "Demo mode" in said and "Ctrl+C stops every service" in said
    # supervisord gone before the services answered: the announcement gives up at once, saying nothing
    quiet = io.StringIO()
    assert not start_checks.announce(settings, wait_s=10, out=quiet, while_pid=2**22 + 12345)
    assert quiet.getvalue() == ""


def test_the_start_stops_with_the_sentence_when_a_port_is_taken(tmp_path):
    ports = _free_ports()
    _settings_unused, env = _settings(tmp_path, **ports)
    with socket.socket() as other:
        other.bind(("127.0.0.1", ports["TRAINER_PORT"]))
        other.listen()
        result = subprocess.run([sys.executable, "-m", "studio.start_checks"], cwd=REPO, capture_output=True,
                                text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env}, timeout=60)
    assert result.returncode == 1
    assert f"Port {ports['TRAINER_PORT']} (the trainer) is taken by another program" in result.stderr


def test_several_ports_taken_are_named_together_and_the_pods_venv_in_the_stop_hint(tmp_path, monkeypatch):
    ports = _free_ports()
    settings, _env = _settings(tmp_path, **ports)
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", ports["PORT"]))
        one.listen()
        two.bind(("127.0.0.1", ports["TRAINER_PORT"]))
        two.listen()
        problem = start_checks.check(settings, tmp_path / "run")
    assert problem.startswith(f"Ports {ports['PORT']} (the dataset manager), {ports['TRAINER_PORT']} (the trainer) "
                              "are taken by another program. Stop them,")
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("STUDIO_VENV", "/opt/studio-venv")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "supervisord"])
    try:
        (run / "supervisord.pid").write_text(f"{sleeper.pid}\n")
        assert "/opt/studio-venv/bin/python -m studio.supervisor_env ctl shutdown" in start_checks.check(settings, run)
    finally:
        sleeper.kill()
        sleeper.wait()
