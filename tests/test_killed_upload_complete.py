"""An upload finished through the API (`POST .../uploads/<sid>/complete`) whose import is cut short (the dataset
manager's gunicorn worker killed, as the out-of-memory killer does) can run again from its chunks, which stay on disk
until an import of them completes: the same as the page's import of its sessions. A real gunicorn serves it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from tests.helpers import ServerProcess
from tests.test_datasets_support import image_bytes, zip_bytes

IMAGES = 240


def gunicorn_worker(master_pid: int) -> int:
    """The one worker process of a gunicorn master."""
    [child] = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return int(child)


def _poll(url: str, until, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = requests.get(url, timeout=5).json()
            if until(state):
                return state
        except (requests.RequestException, ValueError):  # the worker started again meanwhile
            pass
        assert time.monotonic() < deadline, f"{url} never got there"
        time.sleep(0.05)


def test_a_completed_upload_whose_import_was_killed_imports_the_rest(studio_root, tmp_path):
    env = {"STUDIO_ROOT": str(studio_root), "UPLOAD_CHUNK_MB": "1"}
    with ServerProcess("app", env, log_path=tmp_path / "server.log") as server:
        base = f"{server.url}/api/datasets"
        dataset_id = requests.post(base, json={"name": "killed"}).json()["id"]
        data = zip_bytes([(f"img{n:03d}.png", image_bytes(n, size=(512, 512))) for n in range(IMAGES)])
        session = requests.post(f"{base}/{dataset_id}/uploads", json={"filename": "big.zip", "size": len(data)}).json()
        size = session["chunk_size"]
        for n in range(session["chunks"]):
            put = requests.put(f"{base}/{dataset_id}/uploads/{session['id']}/chunks/{n}", data=data[n * size:][:size])
            assert put.status_code == 200, put.text
        job = requests.post(f"{base}/{dataset_id}/uploads/{session['id']}/complete").json()
        progress = f"{base}/{dataset_id}/imports/{job['id']}"
        running = _poll(progress, lambda state: state["status"] != "queued" and state.get("done", 0) >= 5)
        assert running["status"] == "running", running  # still importing when it is killed
        os.kill(gunicorn_worker(server.proc.pid), signal.SIGKILL)

        cut = _poll(progress, lambda state: state["status"] != "running")
        assert cut["status"] == "interrupted" and cut["resumable"], cut
        again = requests.post(f"{progress}/resume")
        assert again.status_code == 202, again.text  # not "its files were sent in one request"
        done = _poll(f"{base}/{dataset_id}/imports/{again.json()['id']}", lambda state: state["status"] != "running"
                     and state["status"] != "queued")
        assert done["status"] == "completed", done
        images = requests.get(f"{base}/{dataset_id}/images?limit=1000").json()["images"]
        assert sorted(image["name"] for image in images) == [f"img{n:03d}.png" for n in range(IMAGES)]  # none twice
        assert not (studio_root / ".uploads" / f"session-{session['id']}").exists()  # gone once imported
