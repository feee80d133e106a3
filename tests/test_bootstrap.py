"""Pod bootstrap: supervisord.conf as supervisord reads it, the environment it needs, and the start scripts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from studio import supervisor_env
from tests.helpers import REPO, free_port

PROGRAMS = {
    "fetch": "-m studio.fetch",
    "datasets": "-m app",
    "caption": "-m caption_service",
    "trainer": "-m trainer",
    "worker": "-m trainer.worker",
}


def _root_env(root: Path) -> dict:
    return {"STUDIO_ROOT": str(root), "STUDIO_RUN_DIR": str(root.parent / "run")}


def read_supervisor_config(env: dict, monkeypatch) -> object:
    """supervisord's own parser on the project's supervisord.conf, with `env` as its environment."""
    from supervisor.options import ServerOptions

    for key in list(os.environ):
        if key.startswith("STUDIO_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options = ServerOptions()  # reads ENV_* expansions from os.environ here
    options.configfile = str(supervisor_env.CONF)
    options.process_config(do_usage=False)
    return options


def programs(options) -> dict:
    return {p.name: p for group in options.process_group_configs for p in group.process_configs}


def test_supervisord_conf_runs_every_program_with_logs_restarts_and_graceful_stops(studio_root, monkeypatch):
    from supervisor.datatypes import RestartUnconditionally, RestartWhenExitUnexpected

    env = supervisor_env.prepare(_root_env(studio_root), python=sys.executable)
    options = read_supervisor_config(env, monkeypatch)
    found = programs(options)
    assert set(found) == set(PROGRAMS) | {"revive"}  # the listener that starts a FATAL program again
    logs = studio_root / "logs"
    for name, args in PROGRAMS.items():
        program = found[name]
        assert program.command == f"{sys.executable} {args}"
        assert program.directory == str(REPO)
        assert Path(program.stdout_logfile) == logs / f"{name}.log"
        assert program.stdout_logfile_maxbytes > 0 and program.stdout_logfile_backups > 0  # rotation
        assert program.redirect_stderr and program.stopasgroup and program.killasgroup
        assert program.stopsignal == 15  # TERM
    for name in ("datasets", "caption", "trainer", "worker"):
        assert found[name].autorestart is RestartUnconditionally
    assert found["worker"].stopwaitsecs >= 120  # time to checkpoint the running job
    assert found["caption"].environment == {"MALLOC_ARENA_MAX": "2"}  # decoded images' memory goes back
    fetch = found["fetch"]
    assert fetch.startsecs == 0 and fetch.exitcodes == [0]
    assert fetch.autorestart is RestartWhenExitUnexpected  # a one-shot: restarted only after a failure
    assert Path(options.logfile) == logs / "supervisord.log"
    assert options.nodaemon is True
    [server] = options.configroot.supervisord.server_configs
    socket = Path(server["file"])
    assert socket.parent == Path(env["STUDIO_RUN_DIR"]) and len(str(socket).encode()) < 100
    assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700


def test_comfyui_program_appears_only_when_comfyui_is_installed(studio_root, monkeypatch):
    env = supervisor_env.prepare(_root_env(studio_root), python=sys.executable)
    assert "comfyui" not in programs(read_supervisor_config(env, monkeypatch))
    comfy = studio_root / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("# stand-in\n")
    # on the volume but not installed in this container (its venv lives on the container disk): not started
    env = supervisor_env.prepare(_root_env(studio_root), python=sys.executable)
    assert "comfyui" not in programs(read_supervisor_config(env, monkeypatch))
    env = supervisor_env.prepare({**_root_env(studio_root), "COMFYUI_PYTHON": "/opt/comfy venv/bin/python"},
                                 python=sys.executable)
    program = programs(read_supervisor_config(env, monkeypatch))["comfyui"]
    paths_file = Path(env["STUDIO_RUN_DIR"]) / "comfyui-model-paths.yaml"
    assert program.command == ("'/opt/comfy venv/bin/python' main.py --listen 0.0.0.0 --port 8188"
                               f" --extra-model-paths-config {paths_file}")
    assert program.directory == str(comfy)
    # the model paths file shows ComfyUI every file its workflow names, where the fetcher puts it
    import yaml

    from studio.comfyui_models import comfyui_specs
    from studio.models_txt import load_models_txt
    from trainer.engine.comfy_workflow import MODEL_FILES

    section = yaml.safe_load(paths_file.read_text())["zimage_studio"]
    spec, = comfyui_specs(load_models_txt())
    downloaded = {studio_root / "models" / spec.target / pattern for pattern in spec.patterns}
    for category, name in MODEL_FILES.items():
        folders = [Path(section["base_path"]) / folder for folder in section[category].splitlines()]
        assert [folder / name for folder in folders if folder / name in downloaded], (category, name)
    assert Path(program.stdout_logfile) == studio_root / "logs" / "comfyui.log"
    (comfy / "main.py").unlink()  # removed again: the program goes away at the next start
    env = supervisor_env.prepare(_root_env(studio_root), python=sys.executable)
    assert "comfyui" not in programs(read_supervisor_config(env, monkeypatch))


def test_prepare_resolves_the_root_and_creates_the_workspace(tmp_path):
    root = tmp_path / "new-root"
    env = supervisor_env.prepare({"STUDIO_ROOT": str(root), "PORT": "4000"}, python="/x/bin/python")
    run_dir = Path(env["STUDIO_RUN_DIR"])
    assert run_dir == supervisor_env.default_run_dir(root.resolve())
    run_dir.joinpath("conf.d", "00-studio.conf").unlink()
    run_dir.joinpath("conf.d").rmdir()
    run_dir.rmdir()
    assert env["STUDIO_ROOT"] == str(root.resolve()) and env["STUDIO_PYTHON"] == "/x/bin/python"
    assert env["PORT"] == "4000"  # everything else passes through to the programs
    for folder in ("logs", "models", "datasets", "trainer/jobs", ".studio"):
        assert (root / folder).is_dir()


def test_exports_for_the_shell(tmp_path):
    result = subprocess.run([sys.executable, "-m", "studio.supervisor_env", "--exports"], cwd=REPO,
                            env={**os.environ, "STUDIO_ROOT": str(tmp_path / "r o o t"),
                                 "STUDIO_RUN_DIR": str(tmp_path / "run")}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    exported = subprocess.run(["bash", "-c", result.stdout + 'printf "%s\\n" "$STUDIO_ROOT" "$STUDIO_PYTHON"'],
                              capture_output=True, text=True, timeout=30).stdout.splitlines()
    assert exported == [str((tmp_path / "r o o t").resolve()), sys.executable]


def _fake_venv(tmp_path: Path) -> Path:
    """A venv stand-in: its python is this test's python, its supervisord records how it was started."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    record = tmp_path / "supervisord-call.json"
    supervisord = venv / "bin" / "supervisord"
    supervisord.write_text(
        f'#!/bin/sh\nexec {sys.executable} -c "import json, os, sys; '
        f"json.dump({{'argv': sys.argv[1:], 'cwd': os.getcwd(), 'env': dict(os.environ)}}, "
        f"open('{record}', 'w'))\" \"$@\"\n")
    for path in (python, supervisord):
        path.chmod(0o755)
    # install.sh's stamp: the requirements are installed in this python already
    digest = subprocess.run(["bash", "-c", "cat requirements.txt requirements.txt | sha256sum | cut -c1-16"],
                            cwd=REPO, capture_output=True, text=True).stdout.strip()
    (venv / ".studio-requirements.sha").write_text(digest + "\n")
    return venv


def _clean_env(**extra) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("STUDIO_", "PIP_", "HF_HOME", "INSTALL_COMFYUI"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # no nvidia-smi here: no GPU
    env.update(extra)
    return env


@pytest.mark.slow
def test_runpod_start_installs_idempotently_and_execs_supervisord(tmp_path):
    venv = _fake_venv(tmp_path)
    root = tmp_path / "workspace"
    ports = {name: str(free_port()) for name in ("PORT", "TRAINER_PORT", "QWEN_PORT")}  # checked free at start
    env = _clean_env(STUDIO_ROOT=str(root), STUDIO_VENV=str(venv), STUDIO_RUN_DIR=str(tmp_path / "run"), **ports)
    for _attempt in range(2):  # the second start finds everything installed
        result = subprocess.run(["bash", "runpod_start.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert any(line.startswith("[start] no NVIDIA GPU found: demo mode") for line in lines)
        timed = [line for line in lines if line.startswith("[start] ") and line.rstrip().endswith(" s")]
        assert any("install dependencies" in line for line in timed) and any("prepare supervisord" in line
                                                                             for line in timed)
        assert "[install] creating" not in result.stdout and "building llama" not in result.stdout
    call = json.loads((tmp_path / "supervisord-call.json").read_text())
    assert call["argv"] == ["-n", "-c", "supervisord.conf"] and call["cwd"] == str(REPO)
    started = call["env"]
    assert started["STUDIO_DEMO"] == "1" and started["STUDIO_ROOT"] == str(root.resolve())
    assert started["STUDIO_PYTHON"] == str(venv / "bin" / "python")
    cache = root.resolve() / ".cache"
    assert started["PIP_CACHE_DIR"] == str(cache / "pip") and started["HF_HOME"] == str(cache / "huggingface")
    assert started["STUDIO_WHEEL_CACHE"] == str(cache / "wheels")
    assert (root / "logs").is_dir() and (root / "models").is_dir()


@pytest.mark.slow
def test_runpod_start_rejects_unknown_options(tmp_path):
    result = subprocess.run(["bash", "runpod_start.sh", "--nope"], cwd=REPO, capture_output=True, text=True,
                            env=_clean_env(STUDIO_ROOT=str(tmp_path)), timeout=60)
    assert result.returncode == 2
    assert "unknown option --nope" in result.stderr


@pytest.mark.slow
def test_run_script_uses_demo_mode_without_a_gpu(tmp_path):
    venv = _fake_venv(tmp_path)
    env = _clean_env(STUDIO_ROOT=str(tmp_path / "ws"), STUDIO_VENV=str(venv), STUDIO_RUN_DIR=str(tmp_path / "run"))
    result = subprocess.run(["bash", "scripts/run.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[run] no NVIDIA GPU (nvidia-smi not found): demo mode" in result.stdout
    call = json.loads((tmp_path / "supervisord-call.json").read_text())
    assert call["env"]["STUDIO_DEMO"] == "1" and call["argv"] == ["-n", "-c", "supervisord.conf"]


def test_the_dockerfile_copies_what_exists_and_sets_what_install_reads():
    """The image is built on RunPod's side; here its recipe is checked against the repository: every
    file it copies exists, every variable it hands install.sh is one install.sh reads, and the start
    command is the template's start script."""
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ") and " . ." not in line]
    assert copies and all((REPO / source).is_file() for sources in copies for source in sources)
    install = (REPO / "scripts" / "install.sh").read_text()
    run = next(line for line in lines if "bash scripts/install.sh" in line or line.startswith("RUN STUDIO_"))
    handed = [word.split("=")[0] for word in run.split() if word.startswith("STUDIO_") and "=" in word]
    assert handed and all(f"${{{name}" in install for name in handed), handed
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert json.loads(cmd[4:]) == ["bash", "/opt/zimage-studio/runpod_start.sh"]
    assert any(line == "WORKDIR /opt/zimage-studio" for line in lines) and (REPO / "runpod_start.sh").is_file()


def test_ctl_with_a_python_outside_the_venv_says_which_python_to_use(tmp_path):
    """`python -m studio.supervisor_env ctl status` with the system's python ended in a FileNotFoundError traceback."""
    bare = tmp_path / "bare"
    (bare / "bin").mkdir(parents=True)
    python = bare / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    result = subprocess.run([sys.executable, "-m", "studio.supervisor_env", "ctl", "status"], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env=_clean_env(STUDIO_ROOT=str(tmp_path / "root"), STUDIO_PYTHON=str(python),
                                           STUDIO_RUN_DIR=str(tmp_path / "run"), PATH=str(bare / "bin")))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "supervisorctl was not found beside" in result.stderr and ".venv/bin/python -m studio.supervisor_env" in \
        result.stderr
