"""Publish a finished LoRA to Hugging Face: one commit with the LoRA, a model card the hub reads (base model,
trigger word, the last previews as its gallery), the proof grid, the workflow and the previews; private unless
asked; every refusal a sentence. A local server speaking the hub's upload protocol stands in for the hub."""

from __future__ import annotations

import json
import time

import pytest

import trainer
from studio.atomic import atomic_write_json
from studio.workspace import Workspace
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_trainer_renders import finished_job
from trainer import hub_publish


@pytest.fixture
def published(make_settings, demo_root, demo_paths, hub):  # noqa: F811
    def make(status: str = "completed", **env):
        settings = make_settings(STUDIO_DEMO=1, HF_ENDPOINT=hub.url, **{"HF_TOKEN": "hf_write", **env})
        app = trainer.create_app(settings)
        job = finished_job(app.extensions["job_store"], settings.root, demo_paths, status=status)
        job_dir = Workspace(settings.root).jobs / job.id
        if status == "completed":
            (job_dir / "lora" / "README.txt").write_text("tiny-lora: a LoRA for Tongyi-MAI/Z-Image-Turbo\n")
            (job_dir / "lora" / "proof_grid.png").write_bytes(b"grid-png")
            step = job_dir / "samples" / "step_000006"
            step.mkdir(parents=True)
            for index in range(5):
                (step / f"{index}.png").write_bytes(b"png-%d" % index)
            (step / "0_notrigger.png").write_bytes(b"left out")
            (step / "prompts.json").write_text(json.dumps([f"tok, prompt {i}" for i in range(5)]))
        return app.test_client(), job, job_dir

    return make


def _publish(client, job_id: str, body: dict) -> dict:
    response = client.post(f"/api/jobs/{job_id}/publish-hub", json=body)
    assert response.status_code == 202, response.get_json()
    deadline = time.monotonic() + 30
    while (state := client.get(f"/api/jobs/{job_id}/publish-hub").get_json()["publish"])["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state


def test_a_finished_lora_is_published_in_one_commit_with_a_model_card(published, hub):  # noqa: F811
    client, job, job_dir = published()
    assert client.get(f"/api/jobs/{job.id}/publish-hub").get_json() == {"publish": None, "token": True}
    state = _publish(client, job.id, {"repo": "tiny-lora"})
    assert state["status"] == "completed", state
    assert state["repo"] == "me/tiny-lora" and state["url"] == f"{hub.url}/me/tiny-lora"  # the token's owner
    files = ["README.md", "images/1.png", "images/2.png", "images/3.png", "images/4.png", "proof_grid.png",
             "tiny-lora.safetensors"]
    assert hub.commits == [{"repo": "me/tiny-lora", "summary": "tiny-lora: tiny-lora.safetensors (6 steps)",
                            "files": files}]
    stored = hub.repos["me/tiny-lora"]
    assert stored["tiny-lora.safetensors"] == (job_dir / "lora" / "tiny-lora.safetensors").read_bytes()
    assert stored["images/1.png"] == b"png-0" and "me/tiny-lora" in hub.private  # private unless asked
    card = stored["README.md"].decode()
    assert card.startswith("---\nbase_model: Tongyi-MAI/Z-Image-Turbo\n")
    assert 'instance_prompt: "tok"' in card and '- text: "tok, prompt 0"\n  output:\n    url: images/1.png' in card
    assert "![tok, prompt 3](images/4.png)" in card and "tiny-lora: a LoRA for Tongyi-MAI" in card
    (meta,) = hub.cards  # the front matter is YAML the hub reads
    assert meta["base_model"] == "Tongyi-MAI/Z-Image-Turbo" and meta["instance_prompt"] == "tok"
    assert meta["widget"][0] == {"text": "tok, prompt 0", "output": {"url": "images/1.png"}}
    assert all(r["auth"] == "Bearer hf_write" for r in hub.requests)

    again = _publish(client, job.id, {"repo": "me/tiny-lora", "private": False})  # the repo exists: a new commit
    assert again["status"] == "completed" and len(hub.commits) == 2, again


def test_publishing_again_with_fewer_previews_removes_the_earlier_ones_only(published, hub):  # noqa: F811
    client, job, job_dir = published()
    hub.add("me/tiny-lora", {"README.md": b"# old", "images/1.png": b"old-1", "images/7.png": b"old-7",
                             "images/how-it-learned.gif": b"old-gif", "older-lora.safetensors": b"kept",
                             "notes/images/x.png": b"kept too"})
    for index in (2, 3, 4):  # this time two previews
        (job_dir / "samples" / "step_000006" / f"{index}.png").unlink()
    state = _publish(client, job.id, {"repo": "tiny-lora"})
    assert state["status"] == "completed", state
    assert hub.commits[-1]["deleted"] == ["images/7.png", "images/how-it-learned.gif"]
    assert sorted(hub.repos["me/tiny-lora"]) == ["README.md", "images/1.png", "images/2.png", "notes/images/x.png",
                                                 "older-lora.safetensors", "proof_grid.png", "tiny-lora.safetensors"]
    assert hub.repos["me/tiny-lora"]["images/1.png"] == b"png-0"


def test_a_public_repo_in_a_named_namespace(published, hub):  # noqa: F811
    client, job, _ = published()
    state = _publish(client, job.id, {"repo": "studio-org/anna-v2", "private": False})
    assert state["status"] == "completed" and "studio-org/anna-v2" in hub.repos
    assert "studio-org/anna-v2" not in hub.private


@pytest.mark.parametrize("body, status, words", [
    ({"repo": "a/b/c"}, 422, "not a valid repo name"),
    ({"repo": "-bad"}, 422, "not a valid repo name"),
    ({"repo": "two--dashes"}, 422, "not a valid repo name"),
    ({"repo": 7}, 422, "'repo' must name the model repo"),
    ({"repo": "fine", "private": "yes"}, 422, "'private' must be true or false"),
])
def test_what_cannot_be_published_is_refused_at_once(published, hub, body, status, words):  # noqa: F811
    client, job, _ = published()
    response = client.post(f"/api/jobs/{job.id}/publish-hub", json=body)
    assert response.status_code == status and words in response.get_json()["error"]
    assert hub.commits == []


def test_no_token_or_no_finished_lora_is_a_409(published):
    client, job, _ = published(HF_TOKEN="")
    response = client.post(f"/api/jobs/{job.id}/publish-hub", json={})
    assert response.status_code == 409 and "Set HF_TOKEN" in response.get_json()["error"]
    assert client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["token"] is False
    client, job, _ = published(status="failed")
    response = client.post(f"/api/jobs/{job.id}/publish-hub", json={})
    assert response.status_code == 409 and "finished job" in response.get_json()["error"]


def test_a_token_without_write_access_fails_with_a_sentence(published, hub):  # noqa: F811
    client, job, _ = published()
    hub.user = None  # the hub refuses the token
    state = _publish(client, job.id, {"repo": "me/tiny-lora"})
    assert state["status"] == "failed" and "HF_TOKEN needs write access" in state["message"], state
    assert hub.commits == []


def test_an_upload_cut_off_by_a_restart_says_so(published):
    client, job, job_dir = published()
    atomic_write_json(job_dir / hub_publish.STATE_NAME, {"status": "running", "repo": "me/x", "message": "Uploading"})
    state = client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"]
    assert state["status"] == "failed" and "cut off by a restart" in state["message"]


def test_the_card_shows_how_it_learned(published, hub):  # noqa: F811
    """With the base model's picture and a preview step of the first prompt, the commit carries their timelapse and
    the card plays it."""
    from tests.test_trainer_timelapse import _png, _previews

    client, job, job_dir = published()
    _previews(job_dir, steps=(2, 4), prompts=1)
    (job_dir / "samples" / "step_000006" / "0.png").write_bytes(_png((90, 90, 250)))  # the last step's, a picture
    assert _publish(client, job.id, {"repo": "tiny-lora"})["status"] == "completed"
    stored = hub.repos["me/tiny-lora"]
    assert stored["images/how-it-learned.webp"][:4] == b"RIFF"
    assert "## How it learned" in stored["README.md"].decode()
    assert "![how it learned](images/how-it-learned.webp)" in stored["README.md"].decode()


def test_a_lokr_s_card_says_so(tmp_path):
    from types import SimpleNamespace

    from trainer.hub_publish import card

    job = SimpleNamespace(id="j1", config={"name": "cat", "trigger_word": "zkw", "network": "lokr"})
    text = card(job, tmp_path / "cat.safetensors", tmp_path, [])
    assert "- lycoris\n- lokr\n" in text and "A LyCORIS LoKr for [Tongyi-MAI/Z-Image-Turbo]" in text
    job.config["network"] = "lora"
    assert "lycoris" not in card(job, tmp_path / "cat.safetensors", tmp_path, [])


def test_a_publication_says_each_file_and_stops_before_its_commit(published, hub, monkeypatch):  # noqa: F811
    """A LoRA of a few hundred MB went up as one silent "Uploading 8 files" with no way to stop it: each file is said
    as it goes, and Stop ends it before the next file, with nothing committed."""
    import threading

    from huggingface_hub import HfApi

    client, job, _job_dir = published()
    first_file, go_on, said = threading.Event(), threading.Event(), []
    real = HfApi.preupload_lfs_files

    def slow_first(self, repo_id, additions, **kwargs):
        said.append(client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"]["message"])
        if not first_file.is_set():
            first_file.set()
            assert go_on.wait(20)
        return real(self, repo_id, additions=additions, **kwargs)

    monkeypatch.setattr(HfApi, "preupload_lfs_files", slow_first)
    assert client.post(f"/api/jobs/{job.id}/publish-hub", json={"repo": "tiny-lora"}).status_code == 202
    assert first_file.wait(20)
    assert said[0].startswith("Uploading ") and ".safetensors (file 1 of " in said[0]  # the LoRA first
    assert client.delete(f"/api/jobs/{job.id}/publish-hub").status_code == 202
    go_on.set()
    deadline = time.monotonic() + 20
    while (state := client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"])["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state["status"] == "stopped" and "before anything was committed" in state["message"]
    assert hub.commits == [] and len(said) == 1  # no other file went up, and no commit
    assert client.delete(f"/api/jobs/{job.id}/publish-hub").status_code == 409  # nothing to stop now
    again = _publish(client, job.id, {"repo": "tiny-lora"})  # and it can be published again, whole
    assert again["status"] == "completed" and len(hub.commits) == 1


def test_a_stop_that_comes_during_the_commit_is_refused_not_promised(published, hub, monkeypatch):  # noqa: F811
    """Stop pressed while the commit was on its way answered 202 and said "Stopping", and then the LoRA was
    published all the same: it is refused with a sentence, and the page's Stop goes away then."""
    import threading

    from huggingface_hub import HfApi

    client, job, _job_dir = published()
    committing, go_on = threading.Event(), threading.Event()
    real = HfApi.create_commit

    def slow_commit(self, *args, **kwargs):
        committing.set()
        assert go_on.wait(20)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", slow_commit)
    assert client.post(f"/api/jobs/{job.id}/publish-hub", json={"repo": "tiny-lora"}).status_code == 202
    assert committing.wait(20)
    assert client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"]["stoppable"] is False
    refused = client.delete(f"/api/jobs/{job.id}/publish-hub")
    assert refused.status_code == 409 and "can no longer be stopped" in refused.get_json()["error"]
    go_on.set()
    deadline = time.monotonic() + 20
    while (state := client.get(f"/api/jobs/{job.id}/publish-hub").get_json()["publish"])["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state["status"] == "completed" and len(hub.commits) == 1
