"""An import cut short (a pod restart, a stop, a failed download) goes on from where it was: the images it had
moved in are recorded at start, and "Import the rest" runs the same source again (the link with its limit, the
upload's sessions) leaving out what the dataset already has, so nothing is lost or doubled. What cannot run again
says why. A real HTTP server stands in for the web."""

from __future__ import annotations

import time

import app as datasets_app
from studio.jobs import JobStore
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes
from tests.test_datasets_url_import import _dataset, web  # noqa: F401 - the stand-in web, a fixture

DEAD = "999999999:1"  # the owner token of a process that no longer runs


def _studio(make_settings):
    return datasets_app.create_app(make_settings(ALLOW_PRIVATE_URLS="1")).test_client()


def _cut_short(studio_root, dataset_id: str, config: dict, kind: str = "import") -> str:
    """An import job a killed process left running, as the job store holds it."""
    store = JobStore(studio_root / "studio.db")
    job, _ = store.create(kind, dataset=dataset_id, total=3, owner=DEAD, config=config)
    store.start(job.id, DEAD)
    store.progress(job.id, {"done": 1, "phase": "importing"})
    return job.id


def _images(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def _wait(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_link_import_cut_short_by_a_restart_imports_the_rest(make_settings, studio_root, web):  # noqa: F811
    client = _studio(make_settings)
    dataset_id = _dataset(client)
    # the killed import had moved a.png in (the ZIP's first image) without recording it
    (studio_root / "datasets" / dataset_id / "a.png").write_bytes(image_bytes(1, size=(96, 96)))
    job_id = _cut_short(studio_root, dataset_id, {"source": "url", "url": f"{web}/set.zip", "limit": None})
    client = _studio(make_settings)  # the restart
    state = client.get(f"/api/datasets/{dataset_id}/imports/{job_id}").get_json()
    assert state["status"] == "interrupted" and state["resumable"]
    _wait(lambda: "a.png" in _images(client, dataset_id))  # recorded at start: the gallery and exports see it
    latest = client.get(f"/api/datasets/{dataset_id}").get_json()["jobs"]["import"]
    assert latest["id"] == job_id and latest["config"]["source"] == "url"  # what the page offers to resume

    response = client.post(f"/api/datasets/{dataset_id}/imports/{job_id}/resume")
    assert response.status_code == 202, response.get_json()
    done = wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}")
    assert done["status"] == "completed", done
    assert _images(client, dataset_id) == {"a.png": "", "b.png": ""}  # a.png once, not a_2.png
    assert {s["name"]: s["reason"] for s in done["result"]["skipped"]} == {"set.zip/set/a.png":
                                                                          "already in this dataset"}
    assert done["config"] == {"source": "url", "url": f"{web}/set.zip", "limit": None,  # resumable again
                              "spread": False}


def test_an_upload_import_cut_short_runs_again_from_its_sessions(make_settings, studio_root):
    client = _studio(make_settings)
    dataset_id = _dataset(client)
    data = zip_bytes([("x.png", image_bytes(5)), ("y.png", image_bytes(6))])
    session = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "two.zip", "size": len(data)})
    sid = session.get_json()["id"]
    assert client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=data).status_code == 200
    job_id = _cut_short(studio_root, dataset_id, {"source": "sessions", "sessions": [sid]})
    client = _studio(make_settings)
    response = client.post(f"/api/datasets/{dataset_id}/imports/{job_id}/resume")
    assert response.status_code == 202, response.get_json()
    done = wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}")
    assert done["status"] == "completed" and sorted(_images(client, dataset_id)) == ["x.png", "y.png"]
    again = client.post(f"/api/datasets/{dataset_id}/imports/{job_id}/resume")  # its sessions went with it
    assert again.status_code == 409 and "upload them again" in again.get_json()["error"]


def test_what_cannot_be_resumed_says_why(make_settings, studio_root, web):  # noqa: F811
    client = _studio(make_settings)
    dataset_id = _dataset(client)
    plain = _cut_short(studio_root, dataset_id, {})  # files sent in one request: gone with it
    client = _studio(make_settings)
    response = client.post(f"/api/datasets/{dataset_id}/imports/{plain}/resume")
    assert response.status_code == 409 and "cannot run again by itself" in response.get_json()["error"]
    started = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": f"{web}/set.zip"}).get_json()
    finished = wait_job(client, f"/api/datasets/{dataset_id}/imports/{started['id']}")
    assert finished["status"] == "completed"
    response = client.post(f"/api/datasets/{dataset_id}/imports/{started['id']}/resume")
    assert response.status_code == 409 and "is completed: there is nothing to resume" in response.get_json()["error"]
    other = _dataset(client)
    assert client.post(f"/api/datasets/{other}/imports/{plain}/resume").status_code == 404


def test_a_failed_link_import_tries_again(make_settings, studio_root, web, monkeypatch):  # noqa: F811
    from tests.test_datasets_url_import import FILES

    client = _studio(make_settings)
    dataset_id = _dataset(client)
    started = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": f"{web}/later.zip", "limit": 1,
                                                                           "spread": True})
    failed = wait_job(client, f"/api/datasets/{dataset_id}/imports/{started.get_json()['id']}")
    assert failed["status"] == "failed"  # not there yet
    monkeypatch.setitem(FILES, "/later.zip", ("application/zip", {}, zip_bytes([("p.png", image_bytes(7)),
                                                                                ("q.png", image_bytes(8))])))
    response = client.post(f"/api/datasets/{dataset_id}/imports/{failed['id']}/resume")
    done = wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}")
    # its limit kept, spread: the one image from the middle of two is the second
    assert done["status"] == "completed" and list(_images(client, dataset_id)) == ["q.png"]


def test_a_failed_upload_import_keeps_its_chunks_for_try_again(make_settings, studio_root, monkeypatch):
    from app import importer

    client = _studio(make_settings)
    dataset_id = _dataset(client)
    data = zip_bytes([("x.png", image_bytes(5))])
    sid = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "one.zip", "size": len(data)}
                      ).get_json()["id"]
    client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=data)
    real = importer._place_all

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(importer, "_place_all", full_disk)
    started = client.post(f"/api/datasets/{dataset_id}/imports", json={"sessions": [sid]}).get_json()
    failed = wait_job(client, f"/api/datasets/{dataset_id}/imports/{started['id']}")
    assert failed["status"] == "failed" and "disk is full" in failed["error"], failed
    session = studio_root / ".uploads" / f"session-{sid}"
    assert (session / "chunks" / "0").is_file() and not list(session.glob("file-*"))  # kept, not doubled
    monkeypatch.setattr(importer, "_place_all", real)  # space was freed
    response = client.post(f"/api/datasets/{dataset_id}/imports/{failed['id']}/resume")
    done = wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}")
    assert done["status"] == "completed" and list(_images(client, dataset_id)) == ["x.png"]
    assert not session.exists()  # gone once an import of it completed



def test_an_import_cut_short_runs_again_with_the_frames_it_was_asked_for(make_settings, studio_root):
    from tests.videos import video_bytes

    client = _studio(make_settings)
    dataset_id = _dataset(client)
    clip = video_bytes([1, 2, 3, 4], seconds_each=1.0, sharp_at=3)  # a new scene every second
    sid = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "run.mp4", "size": len(clip)}
                      ).get_json()["id"]
    assert client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=clip).status_code == 200
    frames = {"frame_seconds": 1.0, "max_frames": 3}
    job_id = _cut_short(studio_root, dataset_id, {"source": "sessions", "sessions": [sid], "frames": frames})
    client = _studio(make_settings)
    response = client.post(f"/api/datasets/{dataset_id}/imports/{job_id}/resume")
    assert response.status_code == 202, response.get_json()
    done = wait_job(client, f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}")
    assert done["status"] == "completed" and done["result"]["videos"][0]["frames"] == 3, done  # not 2 (every 2 s)
    assert done["config"]["frames"] == frames
