"""An export whose process is killed half way (the dataset manager's gunicorn worker, as the out-of-memory killer
does) ends interrupted, and its build folder beside the versions (converted pictures, hard links that keep the bytes
of images deleted later) does not stay on the pod's disk for good: the next export sweeps it once it has lain idle.
A real gunicorn serves it."""

from __future__ import annotations

import os
import signal
import time

import requests

from studio import exports
from studio.workspace import Workspace
from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes, zip_bytes
from tests.test_killed_upload_complete import _poll, gunicorn_worker

ENDED = ("completed", "failed", "stopped", "interrupted")


def _export(base: str, dataset_id: str) -> None:
    assert requests.post(f"{base}/{dataset_id}/export", json={"name": "killed"}).status_code == 202


def test_the_build_of_a_killed_export_is_swept(studio_root, tmp_path):
    with ServerProcess("app", {"STUDIO_ROOT": str(studio_root)}, log_path=tmp_path / "server.log") as server:
        base = f"{server.url}/api/datasets"
        dataset_id = requests.post(base, json={"name": "killed"}).json()["id"]
        # BMP pictures are converted for the trainer: an export of them takes a while
        data = zip_bytes([(f"i{n:03d}.bmp", image_bytes(n, size=(1024, 1024), fmt="BMP")) for n in range(100)],
                         compression=0)
        job = requests.post(f"{base}/{dataset_id}/upload", files={"files": ("set.zip", data)}).json()
        imported = _poll(f"{base}/{dataset_id}/imports/{job['id']}", lambda state: state["status"] in ENDED)
        assert imported["status"] == "completed", imported

        _export(base, dataset_id)
        running = _poll(f"{base}/{dataset_id}/export", lambda state: (state["job"] or {}).get("done", 0) >= 5)
        assert running["job"]["status"] == "running", running
        os.kill(gunicorn_worker(server.proc.pid), signal.SIGKILL)
        cut = _poll(f"{base}/{dataset_id}/export", lambda state: state["job"]["status"] != "running")["job"]
        assert cut["status"] == "interrupted", cut

        versions = exports.versions_root(Workspace(studio_root))
        [left] = versions.glob(".build-*")
        assert any(left.iterdir())
        a_day_ago = time.time() - 86400
        os.utime(left, (a_day_ago, a_day_ago))  # nothing wrote to it since
        busy = versions / ".build-killed-0000abcd"  # another export's, at work right now: it stays
        busy.mkdir()

        _export(base, dataset_id)
        done = _poll(f"{base}/{dataset_id}/export", lambda state: state["job"]["status"] in ENDED)["job"]
        assert done["status"] == "completed", done
        assert not left.exists() and busy.is_dir()
        assert sorted(path.name for path in versions.iterdir()) == sorted([busy.name, done["dataset_version"]])
