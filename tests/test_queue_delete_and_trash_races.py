"""Deleting and restoring jobs when something else is on its way: a publication to the hub, a restore while the trash
is emptied, a job restored after a later job's LoRA took its library file's name."""

from __future__ import annotations

import sqlite3
import threading

from studio.workspace import Workspace
from tests import test_trainer_renders as renders_tests
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_job_publish_hardening import _until, publishing_held
from tests.test_trainer_hub_publish import published  # noqa: F401 - a finished job ready to publish
from tests.test_trainer_library_tries import library_lora
from tests.test_trainer_renders import REQUEST, finished_job
from trainer import hub_publish

settings, app, client, store = renders_tests.settings, renders_tests.app, renders_tests.client, renders_tests.store


def test_a_job_is_not_deleted_while_its_lora_goes_up_to_the_hub(published, hub, monkeypatch):  # noqa: F811
    """The delete went through: the upload failed at its next file, and a commit already on its way still landed."""
    client, job, job_dir = published()
    with publishing_held(client, job.id, monkeypatch):
        refused = client.delete(f"/api/jobs/{job.id}")
        assert refused.status_code == 409, refused.get_json()
        assert "being published" in refused.get_json()["error"] and "wait" in refused.get_json()["error"]
        assert job_dir.is_dir() and client.get(f"/api/jobs/{job.id}").status_code == 200
    _until(lambda: job.id not in hub_publish._running, "the publication to end")
    assert client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"]["status"] == "completed"
    assert client.delete(f"/api/jobs/{job.id}").get_json()["deleted"] is True  # once it is up


def test_emptying_the_trash_waits_for_a_restore_on_its_way(app, store, settings, demo_paths):
    """Empty Recently deleted while a restore was putting an entry back: the restore found its files removed under
    it (here the pictures of a try of a library LoRA: the try came back without them)."""
    from trainer import renders

    space = Workspace(settings.root)
    path = library_lora(settings, demo_paths)
    render = store.create(renders.KIND, name="try", config=renders.parse_library(REQUEST, path.name, "", "none"),
                          total=2)[0]
    pictures = renders.folder(space, render)
    pictures.mkdir(parents=True)
    (pictures / "0.png").write_bytes(b"a rendered picture")
    entry = app.test_client().delete(f"/api/library/files/{path.name}").get_json()["trash"]
    assert not pictures.exists()

    answers = {}
    busy = sqlite3.connect(store.db_path, isolation_level=None)  # another writer (the worker) holds the job store
    busy.execute("BEGIN IMMEDIATE")
    restoring = threading.Thread(target=lambda: answers.update(
        restore=app.test_client().post(f"/api/trash/{entry}/restore")))
    emptying = threading.Thread(target=lambda: answers.update(empty=app.test_client().delete("/api/trash")))
    try:
        restoring.start()
        _until(path.exists, "the restore to put the file back")  # it waits on the job store for the try's row now
        emptying.start()
        emptying.join(timeout=2)
    finally:
        busy.execute("ROLLBACK")
        busy.close()
    restoring.join(30)
    emptying.join(30)
    assert answers["restore"].status_code == 200, answers["restore"].get_json()
    assert answers["empty"].status_code == 200
    assert store.find(render.id) is not None and (pictures / "0.png").read_bytes() == b"a rendered picture"
    assert path.is_file()


def test_a_restored_job_does_not_claim_the_library_file_a_later_jobs_lora_took(client, store, settings, demo_paths):
    """Job and LoRA deleted together, a new job's LoRA got the free name, the old job restored: its page showed the
    new LoRA as its own, and Train more steps on it would have replaced that LoRA in the library (and ComfyUI)."""
    from trainer.library import publish

    space = Workspace(settings.root)

    def finished_and_published():
        job = finished_job(store, settings.root, demo_paths)
        (placed, *_) = publish(space, job, space.jobs / job.id / "lora" / "tiny-lora.safetensors")
        return store.update(job.id, result={"library_file": placed.name}), placed  # as the worker records it

    old, placed = finished_and_published()
    client.delete(f"/api/library/files/{placed.name}")  # the card's Delete: its LoRA, then the job
    job_entry = client.delete(f"/api/jobs/{old.id}").get_json()["trash"]
    new, taken = finished_and_published()
    assert taken.name == placed.name and new.result["library_file"] == placed.name

    restored = client.post(f"/api/trash/{job_entry}/restore").get_json()["restored"]
    assert restored["id"] == old.id and "has a file named" in restored["also_refused"]
    assert "library_file" not in (store.get(old.id).result or {})
    assert client.get(f"/api/jobs/{old.id}").get_json()["lora"]["library_file"] is None
    assert client.get(f"/api/jobs/{new.id}").get_json()["lora"]["library_file"] == placed.name
