"""Publishing a job's LoRA to the hub when things go wrong on the user's side: the job deleted while its LoRA goes
up (refused; deleted after, and restored), an expired token, a LoRA name the hub does not take as a repo name. The
local stand-in hub answers; nothing goes to the internet."""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import contextmanager

from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_trainer_hub_publish import _publish, published  # noqa: F401 - a finished job ready to publish
from trainer import hub_publish


def _until(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


@contextmanager
def publishing_held(client, job_id: str, monkeypatch):
    """Publishes the job's LoRA and holds the upload at its first file until the block ends."""
    from huggingface_hub import HfApi

    uploading, go_on = threading.Event(), threading.Event()
    real = HfApi.preupload_lfs_files

    def slow_first(self, repo_id, additions, **kwargs):
        if not uploading.is_set():
            uploading.set()
            assert go_on.wait(20)
        return real(self, repo_id, additions=additions, **kwargs)

    monkeypatch.setattr(HfApi, "preupload_lfs_files", slow_first)
    assert client.post(f"/api/jobs/{job_id}/publish-hub", json={"repo": "tiny-lora"}).status_code == 202
    assert uploading.wait(20)
    try:
        yield
    finally:
        go_on.set()


def test_a_job_is_deleted_after_its_upload_and_publishes_again_once_restored(published, hub, monkeypatch):  # noqa: F811
    """Deleting the job while its LoRA goes up is refused (the upload would fail half way, a commit in flight
    land); once it ended, the job goes to Recently deleted and, restored, publishes again (its last state was left
    "being published" until the trainer restarted)."""
    client, job, _job_dir = published()
    with publishing_held(client, job.id, monkeypatch):
        refused = client.delete(f"/api/jobs/{job.id}")
        assert refused.status_code == 409 and "being published" in refused.get_json()["error"]
    _until(lambda: job.id not in hub_publish._running, "the publication to end")
    deleted = client.delete(f"/api/jobs/{job.id}").get_json()
    assert deleted["deleted"] is True, deleted
    assert client.post(f"/api/trash/{deleted['trash']}/restore").status_code == 200
    state = client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"]
    assert state["status"] != "running", state
    again = _publish(client, job.id, {"repo": "tiny-lora"})
    assert again["status"] == "completed", again


def test_an_expired_token_is_said_to_be_one(published, hub):  # noqa: F811
    client, job, _ = published()
    hub.refused_tokens.add("hf_write")  # the hub no longer knows it: expired or revoked
    state = _publish(client, job.id, {"repo": "tiny-lora"})
    assert state["status"] == "failed", state
    assert "did not accept HF_TOKEN" in state["message"] and "expired" in state["message"], state
    assert hub.commits == []


def test_a_lora_name_the_hub_refuses_is_published_under_a_name_it_takes(published, hub):  # noqa: F811
    """"cat--v2-" is a fine LoRA name and no repo name: publishing without naming a repo answered 422 for a name the
    user never typed (the job page's dialog offers the same name: test_browser_job_publish_names)."""
    client, job, _ = published()
    store = client.application.extensions["job_store"]
    store.update(job.id, config={**job.config, "name": "cat--v2-"})
    state = _publish(client, job.id, {})
    assert state["status"] == "completed" and state["repo"] == "me/cat-v2", state


def test_hub_name_keeps_a_good_name_and_mends_the_others():
    assert hub_publish.hub_name("tiny-lora") == "tiny-lora" and hub_publish.hub_name("v1.5_cat") == "v1.5_cat"
    assert hub_publish.hub_name("cat--v2-") == "cat-v2" and hub_publish.hub_name("a..b.") == "a.b"
    assert hub_publish.hub_name("a.-b") == "a-b" and len(hub_publish.hub_name("x" * 200)) == 96


def test_train_more_steps_waits_for_a_publication_on_its_way(published, hub, monkeypatch):  # noqa: F811
    """Train more steps while the LoRA went up: the run further replaces the very file being uploaded."""
    client, job, _job_dir = published()
    with publishing_held(client, job.id, monkeypatch):
        refused = client.post(f"/api/jobs/{job.id}/continue", json={"more_steps": 100})
        assert refused.status_code == 409 and "being published" in refused.get_json()["error"], refused.get_json()
    _until(lambda: client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"]["status"] != "running",
           "the publication to end")
    assert client.get(f"/api/jobs/{job.id}").get_json()["job"]["status"] == "completed"


def test_the_library_card_does_not_delete_a_lora_on_its_way_to_the_hub(published, hub, monkeypatch):  # noqa: F811
    client, job, _job_dir = published()
    store, space = client.application.extensions["job_store"], client.application.config["STUDIO_WORKSPACE"]
    name = "tiny-lora.safetensors"  # placed in the library when it finished
    space.loras.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job.lora_path, space.loras / name)
    store.update(job.id, result={**(job.result or {}), "library_file": name})
    with publishing_held(client, job.id, monkeypatch):
        refused = client.delete(f"/api/library/files/{name}")
        assert refused.status_code == 409 and "being published to Hugging Face" in refused.get_json()["error"]
    _until(lambda: job.id not in hub_publish._running, "the publication to end")
    assert client.delete(f"/api/library/files/{name}").status_code == 200


def test_the_state_of_a_job_whose_folder_went_is_not_written_into_a_new_folder(tmp_path):
    gone = tmp_path / "jobs" / "a-deleted-job"  # moved to Recently deleted while its LoRA went up
    assert hub_publish._save(gone, status="failed")["status"] == "failed"
    assert not gone.exists()  # a folder made again in its place kept the job from coming back


def test_a_job_deleted_between_a_publish_request_and_its_start_is_not_published(published, hub,  # noqa: F811
                                                                                  monkeypatch):
    """A delete checked for a publication on its way, found none, and moved the job to Recently deleted while a
    publish request was past its own checks: the upload started on a job in the trash (its files gone), and its state
    file made the job's folder again, so the job could not come back."""
    client, job, job_dir = published()
    deleted = []
    real = hub_publish.files_to_publish

    def checked_then_deleted(*args):
        found = real(*args)
        deleted.append(client.delete(f"/api/jobs/{job.id}").get_json())  # the delete lands just now
        return found

    monkeypatch.setattr(hub_publish, "files_to_publish", checked_then_deleted)
    answer = client.post(f"/api/jobs/{job.id}/publish-hub", json={"repo": "tiny-lora"})
    assert answer.status_code == 409 and "deleted a moment ago" in answer.get_json()["error"]
    assert deleted[0]["deleted"] is True and not job_dir.exists() and hub.commits == []
    monkeypatch.setattr(hub_publish, "files_to_publish", real)
    assert client.post(f"/api/trash/{deleted[0]['trash']}/restore").status_code == 200
    assert _publish(client, job.id, {"repo": "tiny-lora"})["status"] == "completed"


def test_more_steps_asked_between_a_publish_request_and_its_start_are_not_published_over(published, hub,  # noqa: F811
                                                                                          monkeypatch):
    client, job, job_dir = published()
    real, store = hub_publish.files_to_publish, client.application.extensions["job_store"]

    def checked_then_continued(*args):
        found = real(*args)
        store.resume(job.id, "Waiting for the worker: 4 more steps.", also_completed=True)  # Train more lands now
        return found

    monkeypatch.setattr(hub_publish, "files_to_publish", checked_then_continued)
    answer = client.post(f"/api/jobs/{job.id}/publish-hub", json={"repo": "tiny-lora"})
    assert answer.status_code == 409 and "Only a finished job" in answer.get_json()["error"]
    assert hub.commits == []
