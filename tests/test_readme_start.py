"""What the README tells a newcomer about starting the studio stays true: its pictures exist, its ports and the
variables that move them are the ones the code reads, the messages its Troubleshooting quotes are the ones the start
prints, and scripts/run.sh answers --help, a wrong option and a too old Python with one sentence before it installs
anything."""

from __future__ import annotations

import os
import re
import subprocess

from studio import start_checks
from studio.settings import load_settings
from tests.helpers import REPO

README = (REPO / "README.md").read_text()
START_SCRIPTS = "".join((REPO / path).read_text() for path in
                        ("scripts/run.sh", "scripts/install.sh", "scripts/comfyui.sh", "runpod_start.sh"))
MOVE_PORTS = "PORT=3100 TRAINER_PORT=8775 QWEN_PORT=11535 bash scripts/run.sh"


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_picture_the_readme_shows_exists():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert pictures, "the README shows no screenshot"
    missing = [path for path in pictures if not (REPO / path).is_file()]
    assert not missing, f"README shows missing pictures: {missing}"


def test_the_ports_table_gives_the_defaults_and_variables_the_settings_read(tmp_path):
    settings = load_settings({"STUDIO_ROOT": str(tmp_path)})
    rows = {cells[0]: cells for cells in (
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in _section("Ports").splitlines() if line.startswith("| ") and line[2:3].isdigit())}
    assert rows[str(settings.port)][2] == "`PORT`"
    assert rows[str(settings.trainer_port)][2] == "`TRAINER_PORT`"
    assert rows[str(settings.qwen_port)][2] == "`QWEN_PORT`"
    moved = load_settings({"STUDIO_ROOT": str(tmp_path), "PORT": "3100", "TRAINER_PORT": "8775", "QWEN_PORT": "11535"})
    assert (moved.port, moved.trainer_port, moved.qwen_port) == (3100, 8775, 11535)


def test_the_readme_moves_the_ports_the_way_the_start_suggests(tmp_path):
    settings = load_settings({"STUDIO_ROOT": str(tmp_path)})
    assert MOVE_PORTS in README.split("\n## ", 1)[0], "the top of the README says how to use other ports"
    assert MOVE_PORTS in _section("Ports") and MOVE_PORTS in _section("Troubleshooting")
    source = (REPO / "studio" / "start_checks.py").read_text()
    assert MOVE_PORTS in source
    for what, _host, port in start_checks.services(settings):
        if what != "the caption service":  # local only: no address to open
            assert f"<http://localhost:{port}>" in README, f"README does not link {what} on {port}"


def test_the_start_messages_troubleshooting_quotes_are_printed_by_the_start():
    trouble = _section("Troubleshooting")
    quoted = {
        '"[start] Port 3000 (the dataset manager) is taken by another program"': "taken by another program",
        '"[start] The studio is already running for …"': "The studio is already running for",
        '"[start] install dependencies (scripts/install.sh) FAILED"': "FAILED (exit",
        '"[run] Python 3.10 or newer is needed"': "[run] Python 3.10 or newer is needed",
        '"[run] the model hub (…) cannot be reached: demo mode"': "cannot be reached: demo mode",
    }
    code = START_SCRIPTS + (REPO / "studio" / "start_checks.py").read_text()
    for quote, printed in quoted.items():
        assert quote in trouble, f"Troubleshooting lacks {quote}"
        assert printed in code, f"the start no longer prints {printed!r}"
    assert "install dependencies (scripts/install.sh)" in START_SCRIPTS


def test_every_start_script_variable_the_readme_names_is_read_by_a_start_script():
    paragraph = README.split("Variables read only by the start scripts:", 1)[1].split("\n\n", 1)[0]
    names = set(re.findall(r"`([A-Z][A-Z0-9_]+)(?:=1)?`", paragraph))
    assert {"STUDIO_VENV", "STUDIO_WHEEL_CACHE", "TORCH_INDEX_URL", "PYTHON"} <= names
    unread = sorted(name for name in names if not re.search(rf"\b{name}\b", START_SCRIPTS))
    assert not unread, f"README names start-script variables no start script reads: {unread}"


def _run_sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "run.sh"), *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **env})


def test_run_sh_help_names_its_option_and_how_to_move_the_ports():
    done = _run_sh("--help")
    assert done.returncode == 0
    assert "--demo" in done.stdout and MOVE_PORTS in done.stdout
    assert "runpod" not in done.stdout.lower().split("(runpod_start.sh)")[1]  # its own help, not the pod's


def test_run_sh_refuses_an_unknown_option_with_how_to_set_ports():
    done = _run_sh("--port", "3100")
    assert done.returncode == 2
    assert "unknown option --port" in done.stderr and MOVE_PORTS in done.stderr


def test_run_sh_names_a_python_too_old_before_installing(tmp_path):
    venv = tmp_path / "venv"
    done = _run_sh(STUDIO_VENV=str(venv), PYTHON=str(tmp_path / "no-such-python"))
    assert done.returncode == 1
    assert done.stderr.startswith("[run] Python 3.10 or newer is needed")
    assert "PYTHON=python3.11 bash scripts/run.sh" in done.stderr
    assert not venv.exists()
