"""Prepare what supervisord.conf expects and start supervisord: `python -m studio.supervisor_env [--exports]`.

supervisord.conf reads STUDIO_ROOT, STUDIO_PYTHON and STUDIO_RUN_DIR from the environment. This module
sets them (the root resolved like the services resolve it, the python running this module, a private
temp folder for the control socket), creates the workspace folders and writes the optional programs: ComfyUI
when it is installed under STUDIO_ROOT/ComfyUI, and a training worker for each GPU past the first (studio.gpus).

- `--exports` prints `export NAME=value` lines for a shell (runpod_start.sh evaluates them, then execs
  supervisord itself).
- `ctl ARGS...` runs supervisorctl with the same environment, from any shell on the pod:
  `python -m studio.supervisor_env ctl status`, `... ctl restart trainer`, `... ctl start fetch`.
- Without either, this process becomes `supervisord -n -c supervisord.conf`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import tempfile
from pathlib import Path

from studio.comfyui_models import comfyui_specs, write_paths_file
from studio.gpus import workers_for
from studio.models_txt import ModelsFileError, load_models_txt
from studio.settings import SettingsError, load_settings, resolve_root
from studio.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "supervisord.conf"
COMFYUI_PORT = 8188

COMFYUI_PROGRAM = """\
; Written at start because ComfyUI is installed in {comfy_dir}.
[program:comfyui]
command={python} main.py --listen 0.0.0.0 --port {port}{model_paths}
directory={comfy_dir}
priority=40
autostart=true
autorestart=true
startsecs=5
startretries=5
stopsignal=TERM
stopwaitsecs=20
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={logs}/comfyui.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3
"""


WORKER_PROGRAM = """\
; Written at start: a training worker for GPU {gpu} (studio.gpus), beside [program:worker] in supervisord.conf.
[program:worker-{slot}]
command={python} -m trainer.worker --slot {slot}
directory={repo}
priority=30
autostart=true
autorestart=unexpected
exitcodes=0
startsecs=2
startretries=10
stopsignal=TERM
stopwaitsecs=120
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={logs}/worker-{slot}.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=5
"""


def default_run_dir(root: Path) -> Path:
    """A short private folder per workspace (a unix socket path must stay under ~100 bytes)."""
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"zimage-studio-{digest}"


def _supervisor_value(value: str) -> str:
    # supervisord expands %(...)s in its config files: a literal % must be doubled.
    return value.replace("%", "%%")


def write_optional_programs(env: dict, run_dir: Path, root: Path) -> list[str]:
    """(Re)write conf.d/*.conf for the optional programs that are installed; return their names."""
    conf_d = run_dir / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    # Always one file, so supervisord's [include] matches something and does not warn.
    (conf_d / "00-studio.conf").write_text("; optional programs follow in this folder when installed\n")
    written = []
    comfy_dir = root / "ComfyUI"
    comfy_conf = conf_d / "comfyui.conf"
    # COMFYUI_PYTHON is set by runpod_start.sh once ComfyUI's own venv is installed in this container;
    # a ComfyUI folder on the volume without it would only crash and restart.
    python = env.get("COMFYUI_PYTHON")
    if (comfy_dir / "main.py").is_file() and python:
        comfy_conf.write_text(COMFYUI_PROGRAM.format(
            python=shlex.quote(_supervisor_value(python)), comfy_dir=_supervisor_value(str(comfy_dir)),
            port=COMFYUI_PORT, logs=_supervisor_value(str(root / "logs")),
            model_paths=_comfyui_model_paths(run_dir, root)))
        written.append("comfyui")
    else:
        comfy_conf.unlink(missing_ok=True)
    return written + _write_workers(env, conf_d, root)


def _write_workers(env: dict, conf_d: Path, root: Path) -> list[str]:
    """One more training worker for each GPU past the first (supervisord.conf runs the first)."""
    for old in conf_d.glob("worker-*.conf"):
        old.unlink()
    try:
        gpus = workers_for(load_settings(env), env)
    except SettingsError as exc:  # the services say the same when they start
        print(f"One training worker: {exc}", file=sys.stderr)
        return []
    written = []
    for slot, gpu in enumerate(gpus[1:], start=2):
        (conf_d / f"worker-{slot}.conf").write_text(WORKER_PROGRAM.format(
            slot=slot, gpu=gpu if gpu is not None else "(none: the CPU)",
            python=shlex.quote(_supervisor_value(env["STUDIO_PYTHON"])), repo=_supervisor_value(str(REPO)),
            logs=_supervisor_value(str(root / "logs"))))
        written.append(f"worker-{slot}")
    return written


def _comfyui_model_paths(run_dir: Path, root: Path) -> str:
    """The option that shows ComfyUI the Z-Image-Turbo files the fetcher downloads for it ("" when
    models-comfyui.txt cannot be read: ComfyUI then starts with its own folders only)."""
    try:
        specs = comfyui_specs(load_models_txt())
    except ModelsFileError as exc:
        print(f"ComfyUI starts without the studio's model folders: {exc}", file=sys.stderr)
        return ""
    paths_file = run_dir / "comfyui-model-paths.yaml"
    write_paths_file(paths_file, Workspace(root).models, specs)
    return " --extra-model-paths-config " + shlex.quote(_supervisor_value(str(paths_file)))


def prepare(environ: dict | None = None, python: str | None = None) -> dict:
    """The environment supervisord needs, with the workspace and run folder created."""
    env = dict(os.environ if environ is None else environ)
    root = resolve_root(env)
    Workspace(root).ensure()
    env["STUDIO_ROOT"] = str(root)
    env["STUDIO_PYTHON"] = python or env.get("STUDIO_PYTHON") or sys.executable
    run_dir = Path(env.get("STUDIO_RUN_DIR") or default_run_dir(root))
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    env["STUDIO_RUN_DIR"] = str(run_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    write_optional_programs(env, run_dir, root)
    return env


def supervisord_command(env: dict) -> list[str]:
    """supervisord from the same environment as the python that runs the services."""
    candidate = Path(env["STUDIO_PYTHON"]).parent / "supervisord"
    executable = str(candidate) if candidate.exists() else "supervisord"
    return [executable, "-n", "-c", str(CONF)]


def supervisorctl_command(env: dict, *args: str) -> list[str]:
    candidate = Path(env["STUDIO_PYTHON"]).parent / "supervisorctl"
    executable = str(candidate) if candidate.exists() else "supervisorctl"
    return [executable, "-c", str(CONF), *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.supervisor_env", description=__doc__.splitlines()[0])
    parser.add_argument("--exports", action="store_true", help="print shell export lines instead of starting")
    argv = sys.argv[1:] if argv is None else argv
    # `ctl` hands every later argument to supervisorctl untouched (`ctl tail -f worker`).
    ctl_args = argv[1:] if argv[:1] == ["ctl"] else None
    args = parser.parse_args([] if ctl_args is not None else argv)
    try:
        env = prepare()
    except (SettingsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.exports:
        for name in ("STUDIO_ROOT", "STUDIO_PYTHON", "STUDIO_RUN_DIR", "PYTHONUNBUFFERED", "TOKENIZERS_PARALLELISM"):
            print(f"export {name}={shlex.quote(env[name])}")
        return 0
    os.chdir(REPO)
    command = supervisorctl_command(env, *ctl_args) if ctl_args is not None else supervisord_command(env)
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:  # a python outside the studio's venv: supervisor is not installed beside it
        print(f"error: {Path(command[0]).name} was not found beside {env['STUDIO_PYTHON']}: run this with the "
              "studio's own python, e.g. .venv/bin/python -m studio.supervisor_env ctl status (on a pod: "
              "/opt/studio-venv/bin/python).", file=sys.stderr)
        return 2
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    raise SystemExit(main())
