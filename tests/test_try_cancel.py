"""Cancelling a render of Try the LoRA while it renders (a 24-picture 2048x2048 render queued by mistake must not
hold the GPU for minutes): Delete on a running render asks for a stop; the render process ends it between two
pictures and it goes with its pictures, the models staying loaded; one stuck in a long picture ends with its
process."""

from __future__ import annotations

import sys
import threading

from studio.processes import process_token
from studio.workspace import Workspace
from tests.test_trainer_renders import REQUEST, FakeSession, app, client, finished_job, settings, store  # noqa: F401
from trainer import render_runner, renders
from trainer.render_job import execute
from trainer.worker import Worker


class PicturesSession(FakeSession):
    """Writes one picture per strength, reporting before each as the engine does; `between(i)` runs after
    picture i."""

    def __init__(self, between=lambda _index: None):
        super().__init__()
        self.between, self.made = between, 0

    def render(self, request, files, out_dir, on_progress, labels, stack=()):
        self.calls.append(request.prompt)
        images = []
        for index, strength in enumerate(request.strengths):
            on_progress({"phase": "rendering", "done": index, "total": len(request.strengths)})
            (out_dir / f"{index}.png").write_bytes(b"png")
            self.made += 1
            images.append({"strength": strength, "lora": 0, "file": f"{index}.png", "seconds": 0.0})
            self.between(index)
        on_progress({"phase": "rendering", "done": len(images), "total": len(images)})
        return images


def _running(client, store, settings, demo_paths, **body):  # noqa: F811
    job = finished_job(store, settings.root, demo_paths)
    made = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, **body}).get_json()["render"]
    store.start(made["id"], process_token())  # a live owner: the listing's recovery leaves it running
    return job, made


def test_cancelling_a_running_render_stops_it_between_pictures(client, store, settings, demo_paths):  # noqa: F811
    job, made = _running(client, store, settings, demo_paths, strengths=[0, 0.5, 1, 1.5, 2])
    url = f"/api/jobs/{job.id}/renders/{made['id']}"

    def cancel_after_the_second(index):
        if index == 1:
            response = client.delete(url)
            assert response.status_code == 202 and response.get_json() == {
                "deleted": False, "cancelling": True, "id": made["id"]}
            shown = client.get(f"/api/jobs/{job.id}/renders").get_json()["renders"][0]
            assert shown["status"] == "running" and shown["cancelling"] is True

    session = PicturesSession(cancel_after_the_second)
    code = execute(settings, made["id"], session=session)
    assert code == 0, store.find(made["id"]) and store.find(made["id"]).error
    assert session.made == 2  # not all five
    assert store.find(made["id"]) is None
    assert not renders.folder(Workspace(settings.root), _render_stub(job.id, made["id"])).exists()
    assert client.get(f"/api/jobs/{job.id}/renders").get_json()["renders"] == []


def _render_stub(parent_id: str, render_id: str):
    from types import SimpleNamespace

    return SimpleNamespace(id=render_id, parent_id=parent_id, config={})


def test_a_render_cancelled_as_it_ends_goes_too(client, store, settings, demo_paths):  # noqa: F811
    job, made = _running(client, store, settings, demo_paths, strengths=[0, 1])
    url = f"/api/jobs/{job.id}/renders/{made['id']}"
    session = PicturesSession(lambda index: client.delete(url) if index == 1 else None)  # after its last picture
    assert execute(settings, made["id"], session=session) == 0
    assert session.made == 2 and store.find(made["id"]) is None
    assert not renders.folder(Workspace(settings.root), _render_stub(job.id, made["id"])).exists()


def test_a_cancel_that_lands_as_the_render_completes_is_kept(client, store, settings, demo_paths,  # noqa: F811
                                                              monkeypatch):
    """The cancel answered 202 ("cancelling") in the instant between the render's last look at its stop and its
    completion: it stayed completed, with its pictures, though the page had said it was going."""
    from studio.jobs import JobStore

    job, made = _running(client, store, settings, demo_paths, strengths=[0, 1])
    url = f"/api/jobs/{job.id}/renders/{made['id']}"
    finish = JobStore.finish
    answers = []

    def cancel_first(self, job_id, status, **kwargs):
        if status == "completed" and not answers:
            answers.append(client.delete(url).status_code)
        return finish(self, job_id, status, **kwargs)

    monkeypatch.setattr(JobStore, "finish", cancel_first)
    assert execute(settings, made["id"], session=PicturesSession()) == 0
    assert answers == [202]
    assert store.find(made["id"]) is None
    assert not renders.folder(Workspace(settings.root), _render_stub(job.id, made["id"])).exists()


def test_the_next_render_goes_on_after_a_cancelled_one(client, store, settings, demo_paths):  # noqa: F811
    job, made = _running(client, store, settings, demo_paths, strengths=[0, 1, 2])
    nxt = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "seed": 99}).get_json()["render"]
    url = f"/api/jobs/{job.id}/renders/{made['id']}"
    session = PicturesSession(lambda index: client.delete(url) if index == 0 and store.find(made["id"]) else None)
    assert execute(settings, made["id"], session=session) == 0
    assert store.find(made["id"]) is None
    # the process took the next one with its models loaded (owner set), and rendered it whole
    ended = store.get(nxt["id"])
    assert ended.status == "completed" and len(ended.result["images"]) == 2


def test_a_queued_or_finished_render_is_deleted_at_once(client, store, settings, demo_paths):  # noqa: F811
    job = finished_job(store, settings.root, demo_paths)
    made = client.post(f"/api/jobs/{job.id}/renders", json=REQUEST).get_json()["render"]
    response = client.delete(f"/api/jobs/{job.id}/renders/{made['id']}")
    assert response.status_code == 200 and response.get_json() == {"deleted": True, "id": made["id"]}
    assert store.find(made["id"]) is None


def test_a_cancelled_render_stuck_in_one_picture_ends_with_its_process(store, settings, demo_paths, monkeypatch):  # noqa: F811
    monkeypatch.setattr(render_runner, "CANCEL_GRACE_S", 0.5)
    job = finished_job(store, settings.root, demo_paths)
    config = renders.parse(REQUEST, job, Workspace(settings.root).jobs / job.id)
    made = store.create(renders.KIND, name="x", parent_id=job.id, config=config, total=2)[0]
    hang = [sys.executable, "-c", "import time; print('one long picture', flush=True); time.sleep(600)"]
    worker = Worker(settings, poll_s=0.1, heartbeat_s=0.2, unload_caption=False, render_command=lambda _id: hang)
    waiting = threading.Event()

    def cancel_once_running():
        for _ in range(200):
            now = store.find(made.id)
            if now is not None and now.status == "running":
                store.request_stop(made.id, delete=True, reason="Cancelling.")
                waiting.set()
                return
            threading.Event().wait(0.05)

    threading.Thread(target=cancel_once_running, daemon=True).start()
    assert worker.run_once().id == made.id
    assert waiting.is_set() and store.find(made.id) is None
    assert not renders.folder(Workspace(settings.root), made).exists()


def test_a_render_whose_worker_died_while_it_was_cancelled_goes_on_the_next_start(client, store, settings,  # noqa: F811
                                                                                  demo_paths):
    from trainer.recovery import reconcile

    job = finished_job(store, settings.root, demo_paths)
    made = client.post(f"/api/jobs/{job.id}/renders", json=REQUEST).get_json()["render"]
    store.start(made["id"], "4242:1")  # a worker that is gone now
    store.request_stop(made["id"], delete=True, reason="Cancelling.")
    folder = renders.folder(Workspace(settings.root), _render_stub(job.id, made["id"]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0.png").write_bytes(b"png")  # the picture it made before the worker died
    workspace = Workspace(settings.root)
    reconcile(store, workspace.jobs, workspace=workspace)
    assert store.find(made["id"]) is None and not folder.exists()  # not requeued, nor left as "stopped"
