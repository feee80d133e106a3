"""Publishing again to a repo that exists already: the hub keeps an existing repo's visibility whatever
`create_repo` is asked, so a public repo asked to be private is made private before anything is uploaded, a
private one asked to be public stays private and says so, and what the studio reports is the repo's real
visibility. A local server speaking the hub's protocol stands in for the hub."""

from __future__ import annotations

from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_hub_push import _exported, _publish, client  # noqa: F401 - a fixture
from tests.test_trainer_hub_publish import _publish as _publish_lora
from tests.test_trainer_hub_publish import published  # noqa: F401 - a fixture


def _order(hub) -> list[str]:  # noqa: F811 - the fixture's value
    return [f"{r['method']} {r['path'].split('/')[-1]}" for r in hub.requests
            if r["method"] == "PUT" or "/preupload/" in r["path"] or "/commit/" in r["path"]]


def test_a_public_dataset_repo_asked_private_is_made_private_before_the_upload(client, hub):  # noqa: F811
    hub.add("datasets/me/cats", {"README.md": b"# old\n"})  # published public before
    dataset_id = _exported(client, {"a.png": "a cat"})
    job = _publish(client, dataset_id, {"repo": "cats", "private": True})
    assert job["status"] == "completed", job
    assert "datasets/me/cats" in hub.private
    assert hub.settings_changes == [{"repo": "datasets/me/cats", "visibility": "private"}]
    assert _order(hub)[0] == "PUT settings"  # before a byte of the dataset went up
    assert job["result"]["private"] is True
    assert "me/cats was public: it was made private before the upload" in job["message"]


def test_a_private_dataset_repo_asked_public_stays_private_and_says_so(client, hub):  # noqa: F811
    hub.add("datasets/me/cats", {"README.md": b"# old\n"})
    hub.private.add("datasets/me/cats")
    dataset_id = _exported(client, {"a.png": "a cat"})
    job = _publish(client, dataset_id, {"repo": "cats", "private": False})
    assert job["status"] == "completed", job
    assert job["result"]["private"] is True  # not "public": the repo is private
    assert "stays private, as it was" in job["message"]
    assert "datasets/me/cats" in hub.private and hub.settings_changes == []


def test_a_new_repo_has_the_visibility_asked_without_a_note(client, hub):  # noqa: F811
    dataset_id = _exported(client, {"a.png": "a cat"})
    job = _publish(client, dataset_id, {"repo": "fresh", "private": False})
    assert job["status"] == "completed" and job["result"]["private"] is False
    assert job["message"] == "Published 1 image to me/fresh." and hub.settings_changes == []


def test_a_token_that_may_not_change_the_visibility_uploads_nothing(client, hub, monkeypatch):  # noqa: F811
    hub.add("datasets/me/cats", {"README.md": b"# old\n"})
    monkeypatch.setattr(hub, "repo_settings", lambda handler: hub._send(
        handler, 403, b'{"error":"You cannot change this repo"}', {"Content-Type": "application/json"}))
    dataset_id = _exported(client, {"a.png": "a cat"})
    job = _publish(client, dataset_id, {"repo": "cats", "private": True})
    assert job["status"] == "failed", job
    assert "me/cats is public, and Hugging Face refused to make it private" in job["error"]
    assert hub.commits == [] and "datasets/me/cats" not in hub.private


def test_a_public_model_repo_asked_private_is_made_private_and_the_page_state_says_private(published, hub):  # noqa: F811
    web, job, _ = published()
    hub.add("me/tiny", {"README.md": b"# old\n"})  # an earlier LoRA, published public
    state = _publish_lora(web, job.id, {"repo": "tiny", "private": True})
    assert state["status"] == "completed", state
    assert "me/tiny" in hub.private and _order(hub)[0] == "PUT settings"
    assert state["private"] is True and "was made private before the upload" in state["visibility"]


def test_a_private_model_repo_asked_public_is_reported_private(published, hub):  # noqa: F811
    web, job, _ = published()
    hub.add("me/tiny", {"README.md": b"# old\n"})
    hub.private.add("me/tiny")
    state = _publish_lora(web, job.id, {"repo": "tiny", "private": False})
    assert state["status"] == "completed", state
    assert state["private"] is True and "stays private" in state["message"]
