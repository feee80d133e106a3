"""Two pods on one network volume run two studios on one workspace: both workers would take the same jobs, and each
would take the other's running jobs for dead ones (their pids are not on this machine). The worker notes its machine in
the workspace; every page says so while another machine's note is fresh; only the pod that came first starts jobs; and
another pod's job is never ended, retried or killed while that pod runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import app as datasets_app
import trainer
from studio import downloads, host_claim
from studio.jobs import JobStore
from studio.processes import process_token, token_alive
from studio.workspace import Workspace
from trainer.recovery import reconcile
from trainer.worker import Worker


def _other_pod(state, seconds_ago: float = 5.0, since_ago: float | None = None) -> None:
    path = host_claim._file(state, "pod-b")
    path.parent.mkdir(parents=True, exist_ok=True)
    note = {"machine": "pod-b", "pid": 7, "at": time.time() - seconds_ago}
    if since_ago is not None:
        note["since"] = time.time() - since_ago
    path.write_text(json.dumps(note))


def _run_worker_start(worker: Worker) -> None:
    worker.shutdown = True  # its loop ends at once; the note is made before it
    try:
        worker.run_forever()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_the_worker_notes_its_machine_and_only_another_machine_is_said(make_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    settings = make_settings()
    _run_worker_start(Worker(settings, unload_caption=False))
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
        assert "stop one of the pods" in page


def test_another_pods_running_job_is_never_ended_retried_or_killed_while_that_pod_runs(make_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-b")
    theirs = process_token()  # pod-b's worker holds the job; the pid is this test's, as pids often coincide
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    assert theirs.endswith("@pod-b") and process_token().endswith("@pod-a")
    assert token_alive(theirs)  # another machine's process cannot be looked at from here: it is not ended
    settings = make_settings()
    workspace = Workspace(settings.root).ensure()
    store = JobStore(workspace.db_path)
    job, _ = store.create("train", name="pod b's")
    store.claim("train", theirs)
    # a process of this machine with the pid pod-b's run has: ending "the orphan" would kill this pod's own training
    local = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "trainer.run_job"])
    try:
        store.heartbeat(job.id, child_pid=local.pid)
        _other_pod(workspace.state)
        assert reconcile(store, workspace.jobs, workspace=workspace) == []
        assert store.get(job.id).status == "running"
        assert local.poll() is None
        _other_pod(workspace.state, seconds_ago=host_claim.FRESH_S + 5)  # pod-b stopped: its job is recovered
        [changed] = reconcile(store, workspace.jobs, workspace=workspace)
        assert changed.id == job.id and changed.status == "queued" and "Interrupted" in changed.message
        assert local.poll() is None  # the process on this machine was never pod-b's
    finally:
        local.kill()
        local.wait()


def test_only_the_pod_that_came_first_starts_jobs(make_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    settings = make_settings()
    state = Workspace(settings.root).ensure().state
    _other_pod(state, since_ago=600)  # pod-b has run here for ten minutes
    worker = Worker(settings, unload_caption=False)
    _run_worker_start(worker)
    assert host_claim.leader(state) == "pod-b"
    job, _ = worker.store.create("train", name="queued on pod a")
    assert worker.run_once() is None  # pod-b's worker runs it
    assert worker.store.get(job.id).status == "queued"
    page = trainer.create_app(settings).test_client().get("/").get_data(as_text=True)
    assert "jobs queued on this pod run on pod-b; this pod starts none while it runs" in page

    _other_pod(state, seconds_ago=host_claim.FRESH_S + 5, since_ago=600)  # pod-b stopped
    assert host_claim.leader(state) is None and not worker._another_pod_leads()


def test_the_pod_that_came_first_keeps_its_place_across_worker_restarts(make_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    settings = make_settings()
    state = Workspace(settings.root).ensure().state
    _run_worker_start(Worker(settings, unload_caption=False))
    [mine] = (state / host_claim.CLAIMS).glob("*.json")
    mine.write_text(json.dumps({**json.loads(mine.read_text()), "since": time.time() - 600}))  # ten minutes ago
    _other_pod(state, since_ago=60)  # pod-b came after
    _run_worker_start(Worker(settings, unload_caption=False))  # supervisord restarted pod-a's worker
    assert host_claim.leader(state) is None  # pod-a still leads
    page = datasets_app.create_app(settings).test_client().get("/").get_data(as_text=True)
    assert "This pod was here first and runs the queued jobs; pod-b starts none while this one runs" in page
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-b")
    assert host_claim.leader(state) == "pod-a"


def test_another_pods_downloads_do_not_hold_this_pod(make_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-b")
    theirs = process_token()
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-a")
    state = Workspace(make_settings().root).ensure().state
    marker = downloads.folder(state) / "other.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"token": theirs, "name": "their.safetensors", "started_at": time.time()}))
    (downloads.folder(state) / "mine.json").write_text(json.dumps(
        {"token": process_token(), "name": "mine.safetensors", "started_at": time.time()}))
    assert downloads.under_way(state) == (["mine.safetensors"], None)
    assert marker.exists()  # pod-b's marker is pod-b's to end
