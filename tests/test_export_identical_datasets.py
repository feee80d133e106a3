"""Two datasets of the same images and captions, or one dataset exported under two names, are separate versions:
each export's dataset.json names its own dataset and name, so the second can be pushed, and the trainer reads the
right name and trigger word. An unchanged dataset exported again under its name still gets its version back."""

from __future__ import annotations

import app as datasets_app
from studio import exports
from studio.atomic import read_json
from studio.workspace import Workspace
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_support import image_bytes, upload, wait_job

FILES = [("a.png", image_bytes(1, size=(64, 64))), ("a.txt", b"a red coat"), ("b.png", image_bytes(2, size=(64, 64)))]


def _dataset(client, name: str, trigger: str = "anna") -> str:
    dataset_id = client.post("/api/datasets", json={"name": name, "trigger_word": trigger}).get_json()["id"]
    assert upload(client, dataset_id, FILES)["status"] == "completed"
    return dataset_id


def _export(client, dataset_id: str, name: str) -> str:
    assert client.post(f"/api/datasets/{dataset_id}/export", json={"name": name}).status_code == 202
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "completed", job
    return job["result"]["version"]


def test_two_datasets_of_the_same_files_each_push_their_own_export(make_settings, hub, studio_root):  # noqa: F811
    client = datasets_app.create_app(make_settings(HF_ENDPOINT=hub.url, HF_TOKEN="hf_pod_token")).test_client()
    first, second = _dataset(client, "Anna"), _dataset(client, "Anna copy")
    v1, v2 = _export(client, first, "anna"), _export(client, second, "anna-copy")
    assert v1 != v2
    workspace = Workspace(studio_root)
    about = read_json(workspace.export_dir("anna-copy") / "dataset.json", {})
    assert about["source_dataset_id"] == second and about["name"] == "anna-copy" and about["version"] == v2
    assert read_json(workspace.export_dir("anna") / "dataset.json", {})["source_dataset_id"] == first
    for version in (v1, v2):  # the stored files still hash to their version
        assert exports.hash_folder(exports.version_dir(workspace, version)) == version
    # the second dataset's push finds its export (it was a 404: "There is no export 'anna-copy' of this dataset")
    response = client.post(f"/api/datasets/{second}/push-hub", json={"repo": "anna-copy"})
    assert response.status_code == 202, response.get_json()
    job = wait_job(client, f"/api/datasets/{second}/push-hub", key="job")
    assert job["status"] == "completed" and job["result"]["export"] == "anna-copy", job
    # exporting the first again, unchanged, gives its own version back (nothing new on disk)
    assert _export(client, first, "anna") == v1


def test_one_dataset_under_two_names_has_a_dataset_json_for_each(make_settings, studio_root):
    client = datasets_app.create_app(make_settings()).test_client()
    dataset_id = _dataset(client, "Anna")
    one, two = _export(client, dataset_id, "anna"), _export(client, dataset_id, "anna-again")
    workspace = Workspace(studio_root)
    assert one != two
    assert read_json(workspace.export_dir("anna") / "dataset.json", {})["name"] == "anna"
    assert read_json(workspace.export_dir("anna-again") / "dataset.json", {})["name"] == "anna-again"
    # the images are hard links to one another: a second name costs the captions and dataset.json only
    image = "a.png" if (workspace.export_dir("anna") / "a.png").exists() else "a.jpg"
    assert (exports.version_dir(workspace, one) / image).stat().st_ino == \
        (exports.version_dir(workspace, two) / image).stat().st_ino


def test_a_folder_of_an_older_release_is_adopted_with_its_own_name(studio_root):
    workspace = Workspace(studio_root).ensure()
    folder = workspace.exports / "old-set"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(image_bytes(1, size=(32, 32)))
    (folder / "a.txt").write_text("a cat\n")
    version = exports.adopt_folder(workspace, "old-set")
    stored = exports.version_dir(workspace, version)
    assert read_json(stored / "dataset.json", {}) == {"name": "old-set", "version": version}
    assert exports.hash_folder(stored) == version
    assert exports.resolve(workspace, "old-set") == version
    assert not list(exports.versions_root(workspace).glob(".adopt-*"))  # no staging left behind
