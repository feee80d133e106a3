"""Recently deleted in the trainer: a deleted job (folder, row, renders) and a deleted library file are kept, listed,
restored as they were (or refused when their place was taken), emptied, and gone after TRASH_DAYS; the storage panel
counts them."""

from __future__ import annotations

import os
import time

from studio.workspace import Workspace
from tests import test_trainer_renders as renders_tests
from tests.test_trainer_library_tries import library_lora
from tests.test_trainer_renders import REQUEST, finished_job
from trainer import trash

settings, app, client, store = renders_tests.settings, renders_tests.app, renders_tests.client, renders_tests.store


def test_a_deleted_job_comes_back_as_it_was(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    render = client.post(f"/api/jobs/{job.id}/renders", json=REQUEST).get_json()["render"]
    space = Workspace(settings.root)
    files = sorted(p.relative_to(space.jobs / job.id) for p in (space.jobs / job.id).rglob("*"))
    gone = client.delete(f"/api/jobs/{job.id}").get_json()
    assert gone["deleted"] is True and store.find(job.id) is None and store.find(render["id"]) is None
    assert not (space.jobs / job.id).exists()
    (entry,) = client.get("/api/trash").get_json()["entries"]
    assert (entry["id"], entry["kind"], entry["name"]) == (gone["trash"], "job", "tiny") and entry["size"] > 0
    assert entry["expires_at"] - entry["deleted_at"] == trash.TRASH_DAYS * trash.DAY_S
    restored = client.post(f"/api/trash/{entry['id']}/restore").get_json()["restored"]
    assert restored == {"kind": "job", "id": job.id, "name": "tiny"}
    back = store.get(job.id)
    assert (back.status, back.config, back.lora_path, back.step) == (job.status, job.config, job.lora_path, job.step)
    assert store.get(render["id"]).parent_id == job.id
    assert sorted(p.relative_to(space.jobs / job.id) for p in (space.jobs / job.id).rglob("*")) == files
    assert client.get("/api/trash").get_json()["entries"] == []
    assert client.get(f"/api/jobs/{job.id}/renders").get_json()["loras"]  # its LoRAs can be tried again


def test_a_job_cannot_come_back_where_its_place_was_taken(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    entry = client.delete(f"/api/jobs/{job.id}").get_json()["trash"]
    (Workspace(settings.root).jobs / job.id).mkdir(parents=True)
    answer = client.post(f"/api/trash/{entry}/restore")
    assert answer.status_code == 409 and "is here already" in answer.get_json()["error"]
    assert store.find(job.id) is None and [e["id"] for e in client.get("/api/trash").get_json()["entries"]] == [entry]


def test_a_deleted_library_file_comes_back_with_its_comfyui_copy(client, settings, demo_paths):
    space = Workspace(settings.root)
    (space.root / "ComfyUI" / "models" / "loras").mkdir(parents=True)
    path = library_lora(settings, demo_paths)
    data = path.read_bytes()
    (space.comfyui_loras / path.name).write_bytes(data)
    tried = client.post(f"/api/library/files/{path.name}/renders", json=REQUEST).get_json()["render"]
    gone = client.delete(f"/api/library/files/{path.name}").get_json()
    assert client.get(f"/api/library/files/{path.name}/renders").status_code == 404  # the file and its tries went
    assert len(gone["removed"]) == 2 and not path.exists() and not (space.comfyui_loras / path.name).exists()
    (entry,) = client.get("/api/trash").get_json()["entries"]
    assert (entry["kind"], entry["name"], entry["size"]) == ("lora", path.name, len(data))
    path.write_bytes(b"another file of that name")
    answer = client.post(f"/api/trash/{entry['id']}/restore")
    assert answer.status_code == 409 and "has a file named found-lora.safetensors again" in answer.get_json()["error"]
    path.unlink()
    assert client.post(f"/api/trash/{entry['id']}/restore").get_json()["restored"]["file"] == path.name
    assert path.read_bytes() == data and (space.comfyui_loras / path.name).read_bytes() == data
    back = client.get(f"/api/library/files/{path.name}/renders").get_json()["renders"]
    assert [(r["id"], r["status"]) for r in back] == [(tried["id"], "queued")]  # its tries came back too


def test_the_trash_is_emptied_by_hand_or_after_its_days(client, store, settings, demo_paths):
    space = Workspace(settings.root)
    first = client.delete(f"/api/jobs/{finished_job(store, settings.root, demo_paths).id}").get_json()["trash"]
    second = client.delete(f"/api/library/files/{library_lora(settings, demo_paths).name}").get_json()["trash"]
    parts = {part["key"]: part["bytes"] for part in client.get("/api/storage").get_json()["parts"]}
    assert parts["deleted"] > 0  # the storage panel counts it
    assert [e["id"] for e in trash.entries(space, now=time.time() + 6 * trash.DAY_S)] == [second, first]
    assert trash.entries(space, now=time.time() + 8 * trash.DAY_S) == []  # a week on: gone for good
    assert not trash.root(space).exists() or not list(trash.root(space).iterdir())
    third = client.delete(f"/api/library/files/{library_lora(settings, demo_paths, 'x.safetensors').name}")
    entry_id = third.get_json()["trash"]
    size = next(e["size"] for e in client.get("/api/trash").get_json()["entries"] if e["id"] == entry_id)
    size += (trash.root(space) / entry_id / trash.MANIFEST).stat().st_size  # the list's size leaves it out
    # the library's copy and ComfyUI's are one file with two names: both went, so the disk got it back once
    assert client.delete(f"/api/trash/{entry_id}").get_json() == {"removed": 1, "freed_bytes": size}
    assert client.delete("/api/trash/nope").status_code == 404
    assert client.post("/api/trash/nope/restore").status_code == 404
    assert client.post("/api/trash/..%2f..%2fstudio.db/restore").status_code in (400, 404)
    kept = library_lora(settings, demo_paths, "y.safetensors")
    linked = kept.with_name("y-linked.safetensors.bak")
    os.link(kept, linked)  # another name outside the trash: removing the entry gives the disk nothing back for it
    client.delete("/api/library/files/y.safetensors")
    emptied = client.delete("/api/trash").get_json()
    assert emptied["removed"] == 1 and emptied["freed_bytes"] < linked.stat().st_size
    assert client.get("/api/trash").get_json()["entries"] == []


def test_every_try_of_a_deleted_library_file_goes_with_it_and_comes_back(client, store, settings, demo_paths):
    """More renders than a listing reads at once (200): none is left behind in the job store."""
    from trainer import renders

    path = library_lora(settings, demo_paths)
    config = renders.parse_library(REQUEST, path.name, "", "none")
    made = {store.create(renders.KIND, name=f"try {i}", config=config, total=2)[0].id for i in range(205)}
    entry = client.delete(f"/api/library/files/{path.name}").get_json()["trash"]
    assert not any(store.find(render_id) for render_id in made)
    assert client.post(f"/api/trash/{entry}/restore").status_code == 200
    assert all(store.find(render_id) for render_id in made)


def test_a_jobs_lora_and_the_job_deleted_from_its_card_come_back_together(client, store, settings, demo_paths):
    from trainer.library import publish

    space = Workspace(settings.root)
    job = finished_job(store, settings.root, demo_paths)
    (placed, *_) = publish(space, job, space.jobs / job.id / "lora" / "tiny-lora.safetensors")
    store.update(job.id, result={"library_file": placed.name})  # as the worker records it

    def delete_from_card():  # what the library page's Delete does
        lora = client.delete(f"/api/library/files/{placed.name}").get_json()["trash"]
        return lora, client.delete(f"/api/jobs/{job.id}").get_json()["trash"]

    lora_entry, _ = delete_from_card()
    restored = client.post(f"/api/trash/{lora_entry}/restore").get_json()["restored"]
    assert restored["kind"] == "lora" and restored["also"] == {"kind": "job", "id": job.id, "name": "tiny"}
    (card,) = client.get("/api/library").get_json()["loras"]
    assert (card["job_id"], card["library_file"]) == (job.id, placed.name)  # the job's card, whole again
    assert client.get("/api/trash").get_json()["entries"] == []

    _, job_entry = delete_from_card()
    placed.write_bytes(b"a new file of that name")  # the LoRA's place is taken: the job comes back, its file waits
    restored = client.post(f"/api/trash/{job_entry}/restore").get_json()["restored"]
    assert restored["kind"] == "job" and "has a file named" in restored["also_refused"]
    assert [e["kind"] for e in client.get("/api/trash").get_json()["entries"]] == ["lora"]
    placed.unlink()
    (waiting,) = client.get("/api/trash").get_json()["entries"]
    assert "also" not in client.post(f"/api/trash/{waiting['id']}/restore").get_json()["restored"]
    assert placed.is_file() and store.get(job.id).status == "completed"


def test_a_library_file_the_trash_cannot_keep_stays_where_it_is(client, store, settings, demo_paths, monkeypatch):
    """A full disk on a volume without hard links: keeping the file failed after its entry was made, and Recently
    deleted listed a file it did not hold (its restore then said the library "has a file of that name again"), with
    the file's tries already taken out of the library."""
    import errno
    import os
    import shutil

    path = library_lora(settings, demo_paths)
    tried = client.post(f"/api/library/files/{path.name}/renders", json=REQUEST).get_json()["render"]

    def no_link(*_args):
        raise OSError(errno.EPERM, "hard links are not supported here")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copy2", full)
    answer = client.delete(f"/api/library/files/{path.name}")
    assert answer.status_code == 507, answer.get_json()
    assert path.is_file() and client.get("/api/trash").get_json()["entries"] == []
    assert store.get(tried["id"]).status == "queued"  # its tries stay with it


def test_the_page_of_a_deleted_job_says_where_it_went(client, store, settings, demo_paths):
    """A bookmarked or shared job page of a deleted job answered raw JSON ({"error": "There is no job …"})."""
    job = finished_job(store, settings.root, demo_paths)
    client.delete(f"/api/jobs/{job.id}")
    page = client.get(f"/jobs/{job.id}")
    text = page.get_data(as_text=True)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "<b>tiny</b> was deleted" in text and 'href="/library#trash"' in text
    other = client.get("/jobs/never-was")
    assert other.status_code == 404 and "There is no training job <code>never-was</code>" in other.get_data(
        as_text=True)


def test_an_entry_expiring_while_it_is_restored_comes_back_whole(client, store, settings, demo_paths):
    """The trash's list removed expired entries without taking the trash: one being restored at that moment lost
    what the restore was putting back (the job's row came back without its folder)."""
    import threading

    job = finished_job(store, settings.root, demo_paths)
    space = Workspace(settings.root)
    files = sorted(p.relative_to(space.jobs / job.id) for p in (space.jobs / job.id).rglob("*"))
    entry = client.delete(f"/api/jobs/{job.id}").get_json()["trash"]
    week_on = time.time() + 8 * trash.DAY_S
    listed = []
    with trash._held(space):  # a restore is under way
        looking = threading.Thread(target=lambda: listed.append(trash.entries(space, now=week_on)))
        looking.start()
        looking.join(0.5)
        assert (trash.root(space) / entry / "job").is_dir()  # the list waits for the restore
        trash._restore(space, store, entry)
    looking.join(10)
    assert listed == [[]]
    assert store.get(job.id).status == job.status
    assert sorted(p.relative_to(space.jobs / job.id) for p in (space.jobs / job.id).rglob("*")) == files
