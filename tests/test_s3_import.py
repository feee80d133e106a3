"""The dataset manager's storage routes: import a bucket prefix into a dataset, push an export to a prefix."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from tests.moto_s3 import MotoS3


@pytest.fixture(scope="module")
def moto():
    server = MotoS3().start()
    yield server
    server.stop()


def png(color, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def make_client(make_settings, **env):
    from app import create_app

    app = create_app(make_settings(**env))
    app.testing = True
    return app.test_client()


def wait_job(client, url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(url).get_json()
        if state["status"] not in {"queued", "running"}:
            return state
        time.sleep(0.1)
    raise AssertionError(f"{url} did not finish: {state}")


def test_import_prefix_into_dataset_then_push_export(moto, make_settings):
    moto.make_bucket("ds-bucket", {
        "people/anna/a.png": png((250, 0, 0)),
        "people/anna/a.txt": b"anna in red",
        "people/anna/more/b.png": png((0, 250, 0)),
        "people/anna/more/a.txt": b"a caption of more/a.png, which is not there",  # not a.png's caption
        "people/anna/fake.jpg": b"not really a jpeg",
        "people/anna/notes.md": b"hello",
        "people/other/c.png": png((0, 0, 250)),
    })
    client = make_client(make_settings, **moto.env(S3_BUCKET="ds-bucket"))
    dataset = client.post("/api/datasets", json={"name": "Anna", "trigger_word": "annaxyz"}).get_json()
    started = client.post(f"/api/datasets/{dataset['id']}/import-s3", json={"prefix": "people/anna"})
    assert started.status_code == 202, started.get_json()
    state = wait_job(client, f"/api/datasets/{dataset['id']}/import-s3/{started.get_json()['id']}")
    assert state["status"] == "completed", state
    result = state["result"]
    assert sorted(result["imported"]) == ["a.png", "b.png"]
    assert {s["name"] for s in result["skipped"]} == {"fake.jpg", "notes.md", "more/a.txt"}  # a caption, no image
    assert result["source"] == {"bucket": "ds-bucket", "prefix": "people/anna/", "files": 6}
    assert client.get(f"/api/datasets/{dataset['id']}").get_json()["images"] == 2
    images = client.get(f"/api/datasets/{dataset['id']}/images").get_json()["images"]
    assert {image["name"]: image["caption"] for image in images} == {"a.png": "anna in red", "b.png": ""}

    # push: before any export there is nothing to push
    early = client.post(f"/api/datasets/{dataset['id']}/push-s3", json={})
    assert early.status_code == 409
    export = client.post(f"/api/datasets/{dataset['id']}/export", json={"name": "anna-v1"})
    assert export.status_code == 202, export.get_json()
    deadline = time.monotonic() + 60
    while client.get(f"/api/datasets/{dataset['id']}/export").get_json()["job"]["status"] in {"queued", "running"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pushed = client.post(f"/api/datasets/{dataset['id']}/push-s3", json={"prefix": "exports/anna-v1"})
    assert pushed.status_code == 202, pushed.get_json()
    state = wait_job(client, f"/api/datasets/{dataset['id']}/push-s3/{pushed.get_json()['id']}")
    assert state["status"] == "completed", state
    keys = moto.keys("ds-bucket", "exports/anna-v1/")
    assert sorted(keys) == ["exports/anna-v1/.studio-push.json", "exports/anna-v1/a.png", "exports/anna-v1/a.txt",
                            "exports/anna-v1/b.png", "exports/anna-v1/b.txt", "exports/anna-v1/dataset.json"]
    caption = moto.client().get_object(Bucket="ds-bucket", Key="exports/anna-v1/a.txt")["Body"].read()
    assert caption.decode().startswith("annaxyz")


def test_storage_errors_answer_at_once_without_secrets(moto, make_settings):
    moto.make_bucket("ds-guarded")
    wrong = "ThisSecretIsWrong000000000000000000000000"
    client = make_client(make_settings, **moto.env(S3_BUCKET="ds-guarded", S3_SECRET_ACCESS_KEY=wrong))
    dataset = client.post("/api/datasets", json={"name": "Guarded"}).get_json()
    with moto.checking_credentials():
        reply = client.post(f"/api/datasets/{dataset['id']}/import-s3", json={"prefix": "x"})
    assert reply.status_code == 502
    assert "S3_SECRET_ACCESS_KEY" in reply.get_json()["error"]
    assert wrong not in reply.get_data(as_text=True) and moto.access_key not in reply.get_data(as_text=True)

    missing = client.post(f"/api/datasets/{dataset['id']}/import-s3", json={"bucket": "nope-bucket", "prefix": "x"})
    assert missing.status_code == 422
    assert "'nope-bucket' does not exist" in missing.get_json()["error"]

    bad_prefix = client.post(f"/api/datasets/{dataset['id']}/import-s3", json={"prefix": "../etc"})
    assert bad_prefix.status_code == 422
    assert client.post("/api/datasets/none-such/import-s3", json={"prefix": "x"}).status_code == 404
    assert client.get(f"/api/datasets/{dataset['id']}/import-s3/import-nope").status_code == 404


def test_unconfigured_storage_is_409(make_settings):
    client = make_client(make_settings)
    dataset = client.post("/api/datasets", json={"name": "Plain"}).get_json()
    reply = client.post(f"/api/datasets/{dataset['id']}/import-s3", json={"prefix": "x"})
    assert reply.status_code == 409
    assert "S3_BUCKET" in reply.get_json()["error"]


def test_routes_need_the_password(make_settings):
    client = make_client(make_settings, STUDIO_PASSWORD="pw-123")
    for method, path in [("post", "/api/datasets/x1/import-s3"), ("get", "/api/datasets/x1/import-s3/x1"),
                         ("post", "/api/datasets/x1/push-s3"), ("get", "/api/datasets/x1/push-s3/x1")]:
        assert getattr(client, method)(path, json={}).status_code == 401


def test_a_limit_downloads_the_first_images_and_the_zips_still_needed(moto, make_settings):
    from tests.test_datasets_support import zip_bytes

    files = {f"many/{n:02d}.png": png((20 * n, 0, 0)) for n in range(6)}
    files.update({f"many/{n:02d}.txt": f"red {n}".encode() for n in range(6)})
    files["many/zz-pack.zip"] = zip_bytes([("p.png", png((0, 0, 90)))])
    moto.make_bucket("limit-bucket", files)
    files = {"packs/a.zip": zip_bytes([("a1.png", png((1, 90, 0))), ("a2.png", png((2, 90, 0)))]),
             "packs/b.zip": zip_bytes([("b1.png", png((3, 90, 0)))]), "packs/c.zip": b"never read"}
    moto.make_bucket("packs-bucket", files)
    client = make_client(make_settings, **moto.env(S3_BUCKET="limit-bucket"))
    dataset = client.post("/api/datasets", json={"name": "Many"}).get_json()["id"]
    started = client.post(f"/api/datasets/{dataset}/import-s3", json={"prefix": "many", "limit": 2})
    state = wait_job(client, f"/api/datasets/{dataset}/import-s3/{started.get_json()['id']}")
    assert state["status"] == "completed", state
    images = client.get(f"/api/datasets/{dataset}/images").get_json()["images"]
    assert {image["name"]: image["caption"] for image in images} == {"00.png": "red 0", "01.png": "red 1"}
    assert state["result"]["source"]["files"] == 4  # two images and their captions; the rest stayed in the bucket
    assert state["result"]["limit"] == {"images": 2, "spread": False, "reached": True, "files_left": 5,
                                        "images_left": 0}
    spread = client.post("/api/datasets", json={"name": "Spread"}).get_json()["id"]  # 2 of 6, from all over
    started = client.post(f"/api/datasets/{spread}/import-s3", json={"prefix": "many", "limit": 2, "spread": True})
    state = wait_job(client, f"/api/datasets/{spread}/import-s3/{started.get_json()['id']}")
    images = client.get(f"/api/datasets/{spread}/images").get_json()["images"]
    assert {image["name"]: image["caption"] for image in images} == {"01.png": "red 1", "04.png": "red 4"}
    assert state["result"]["limit"]["spread"] and state["config"]["spread"] is True  # kept for a resume

    packs = client.post("/api/datasets", json={"name": "Packs"}).get_json()["id"]
    started = client.post(f"/api/datasets/{packs}/import-s3",
                          json={"bucket": "packs-bucket", "prefix": "packs", "limit": 3})
    state = wait_job(client, f"/api/datasets/{packs}/import-s3/{started.get_json()['id']}")
    assert state["status"] == "completed", state  # c.zip (not a ZIP at all) was never downloaded nor read
    assert sorted(state["result"]["imported"]) == ["a1.png", "a2.png", "b1.png"]
    assert state["result"]["source"]["files"] == 2
    refused = client.post(f"/api/datasets/{packs}/import-s3", json={"prefix": "packs", "limit": 0})
    assert refused.status_code == 422 and "'limit' must be a whole number" in refused.get_json()["error"]


def test_a_bucket_import_cut_short_by_a_restart_imports_the_rest(moto, make_settings, studio_root):
    from studio.jobs import JobStore

    moto.make_bucket("resume-bucket", {f"set/{n}.png": png((40 * n, 9, 9)) for n in range(3)})
    client = make_client(make_settings, **moto.env(S3_BUCKET="resume-bucket"))
    dataset = client.post("/api/datasets", json={"name": "Resumed"}).get_json()["id"]
    (studio_root / "datasets" / dataset / "0.png").write_bytes(png((0, 9, 9)))  # placed, not recorded
    store = JobStore(studio_root / "studio.db")
    job, _ = store.create("s3-import", dataset=dataset, owner="999999999:1",
                          config={"source": "s3", "bucket": None, "prefix": "set/", "limit": 2})
    store.start(job.id, "999999999:1")
    client = make_client(make_settings, **moto.env(S3_BUCKET="resume-bucket"))  # the restart
    response = client.post(f"/api/datasets/{dataset}/imports/{job.id}/resume")
    assert response.status_code == 202, response.get_json()
    state = wait_job(client, f"/api/datasets/{dataset}/import-s3/{response.get_json()['id']}")
    assert state["status"] == "completed", state
    names = sorted(i["name"] for i in client.get(f"/api/datasets/{dataset}/images").get_json()["images"])
    assert names == ["0.png", "1.png"]  # the limit of 2 kept; 0.png once


def test_a_bucket_import_takes_the_frames_asked_for_from_its_clips(moto, make_settings):
    from tests.videos import video_bytes

    moto.make_bucket("clips-bucket", {"runs/walk.mp4": video_bytes([1, 2, 3, 4], seconds_each=1.0, sharp_at=3)})
    client = make_client(make_settings, **moto.env(S3_BUCKET="clips-bucket"))
    dataset = client.post("/api/datasets", json={"name": "Runs"}).get_json()["id"]
    started = client.post(f"/api/datasets/{dataset}/import-s3", json={"prefix": "runs", "frame_seconds": 1})
    assert started.status_code == 202 and started.get_json()["config"]["frames"] == {"frame_seconds": 1.0}
    state = wait_job(client, f"/api/datasets/{dataset}/import-s3/{started.get_json()['id']}")
    assert state["status"] == "completed" and state["result"]["videos"][0]["frames"] == 4, state  # 2 every 2 s
    refused = client.post(f"/api/datasets/{dataset}/import-s3", json={"prefix": "runs", "max_frames": 0})
    assert refused.status_code == 422 and "'max_frames'" in refused.get_json()["error"]
