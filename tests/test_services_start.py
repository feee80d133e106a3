"""Each service starts with `python -m <package>` and answers /health; a bad setting stops it at once."""

import subprocess
import sys

import pytest

from tests.helpers import REPO, ServerProcess, free_port, http_status

SERVICES = [("app", "PORT"), ("caption_service", "QWEN_PORT"), ("trainer", "TRAINER_PORT")]


@pytest.mark.slow
@pytest.mark.parametrize("module,port_var", SERVICES)
def test_service_starts_and_answers_health(module, port_var, studio_root):
    env = {"STUDIO_ROOT": str(studio_root), "STUDIO_PASSWORD": "pw", port_var: str(free_port()),
           "HOST": "127.0.0.1", "CAPTION_IDLE_UNLOAD_S": "0"}
    with ServerProcess(module, env, port_var=port_var, log_path=studio_root / f"{module}.log") as server:
        assert http_status(server.url + "/health") == 200
        assert http_status(server.url + "/api/nothing-here") == 401


@pytest.mark.parametrize("module,port_var", SERVICES)
def test_invalid_port_stops_with_one_sentence(module, port_var, studio_root):
    env = {"STUDIO_ROOT": str(studio_root), port_var: "abc", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", module], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {port_var}='abc' is not a port number: use a whole number from 1 to 65535."
