"""Two pods on one network volume run two studios on one workspace: both workers would take the same jobs. The worker
notes its machine in the workspace; every page says so while another machine's note is fresh."""

from __future__ import annotations

import json
import signal
import time

import app as datasets_app
import trainer
from studio import host_claim
from studio.workspace import Workspace
from trainer.worker import Worker


def _other_pod(state, seconds_ago: float = 5.0) -> None:
    path = host_claim._file(state, "pod-b")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": "pod-b", "pid": 7, "at": time.time() - seconds_ago}))


def test_the_worker_notes_its_machine_and_only_another_machine_is_said(make_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    settings = make_settings()
    worker = Worker(settings, unload_caption=False)
    worker.shutdown = True  # its loop ends at once; the note is made before it
    try:
        worker.run_forever()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    state = Workspace(settings.root).state
    [mine] = (state / host_claim.CLAIMS).glob("*.json")
    assert json.loads(mine.read_text())["machine"] == "pod-a"
    assert host_claim.other(state) is None  # its own note is no other machine
    _other_pod(state)
    assert host_claim.other(state)[0] == "pod-b"
    _other_pod(state, seconds_ago=host_claim.FRESH_S + 5)  # that pod stopped a while ago
    assert host_claim.other(state) is None


def test_every_page_says_another_machine_runs_on_this_workspace(make_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    settings = make_settings()
    _other_pod(Workspace(settings.root).ensure().state)
    for client in (datasets_app.create_app(settings).test_client(), trainer.create_app(settings).test_client()):
        page = client.get("/").get_data(as_text=True)
        assert "shared-volume-banner" in page
        assert "Another machine (pod-b) runs a studio on this workspace too" in page
        assert "Stop one of the pods" in page
