"""Dataset manager API: datasets, chunked uploads, images, captions, bulk edits, export, download."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from PIL import Image

from app.export import apply_trigger
from app.store import DatasetStore, NotFound
from studio.jobs import JobStore
from studio.workspace import Workspace
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload, wait_job, zip_bytes

# shared fixtures (pytest finds them as module attributes)
ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


def test_a_name_another_dataset_has_is_made_free_or_refused_on_rename(client):
    client.post("/api/datasets", json={"name": "My cat"})
    again = client.post("/api/datasets", json={"name": "my  CAT"})  # a script's second run
    assert again.status_code == 201 and again.get_json()["name"] == "my CAT 2"
    other = client.post("/api/datasets", json={"name": "Dogs"}).get_json()["id"]
    renamed = client.patch(f"/api/datasets/{other}", json={"name": "MY CAT", "trigger_word": "dogz"})
    assert renamed.status_code == 409
    assert renamed.get_json()["error"] == ("A dataset named 'MY CAT' exists already: choose another name, such as "
                                           "'MY CAT 3'.")
    assert renamed.get_json()["details"] == [{"field": "name", "free": "MY CAT 3"}]
    after = client.get(f"/api/datasets/{other}").get_json()
    assert after["name"] == "Dogs" and after["trigger_word"] == ""  # nothing of the refused change was kept
    # a dataset may keep its own name, in another letter case too
    assert client.patch(f"/api/datasets/{other}", json={"name": "DOGS"}).get_json()["name"] == "DOGS"
    long = "x" * 80
    client.post("/api/datasets", json={"name": long})
    assert client.post("/api/datasets", json={"name": long}).get_json()["name"] == "x" * 78 + " 2"


def test_dataset_crud(client):
    assert client.get("/api/datasets").get_json() == {"datasets": []}
    created = client.post("/api/datasets", json={"name": "  My   Portraits ", "trigger_word": "m1a"})
    assert created.status_code == 201
    body = created.get_json()
    assert body["id"] == "my-portraits" and body["name"] == "My Portraits" and body["images"] == 0
    second = client.post("/api/datasets", json={"name": "My Portraits!"}).get_json()  # the same folder name
    assert second["id"].startswith("my-portraits-") and second["id"] != body["id"]
    hostile = client.post("/api/datasets", json={"name": "../../etc"}).get_json()
    assert hostile["id"] == "etc"
    assert client.post("/api/datasets", json={"name": ""}).status_code == 422
    assert client.post("/api/datasets", json={"name": "x" * 81}).status_code == 422
    assert client.post("/api/datasets", data="nope").status_code == 400
    renamed = client.patch("/api/datasets/my-portraits", json={"name": "Mia", "trigger_word": "mia_x"})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Mia"
    assert client.patch("/api/datasets/my-portraits", json={"colour": "red"}).status_code == 422
    assert client.get("/api/datasets/my-portraits").get_json()["trigger_word"] == "mia_x"
    assert len(client.get("/api/datasets").get_json()["datasets"]) == 3
    assert client.delete("/api/datasets/my-portraits").status_code == 200
    assert client.get("/api/datasets/my-portraits").status_code == 404
    assert client.delete("/api/datasets/my-portraits").status_code == 404


def test_a_job_still_holding_a_deleted_dataset_cannot_bring_it_back(client, studio_root):
    created = client.post("/api/datasets", json={"name": "Cats"}).get_json()
    stale = DatasetStore(Workspace(studio_root)).get(created["id"])  # what a running job holds
    assert client.delete(f"/api/datasets/{created['id']}").status_code == 200
    with pytest.raises(NotFound, match="was deleted"):
        with stale.lock():
            pass
    assert not (studio_root / "datasets" / created["id"]).exists()  # no empty folder left behind
    again = client.post("/api/datasets", json={"name": "Cats"}).get_json()
    assert again["name"] == "Cats" and again["id"] != created["id"]  # the name is free; the id waits for a restore


def test_an_import_says_which_images_are_copies_of_ones_already_here(client, dataset_id):
    photos = [("a.png", image_bytes(1)), ("b.png", image_bytes(2))]
    assert upload(client, dataset_id, photos)["message"] == "Imported 2 images."
    again = upload(client, dataset_id, photos + [("c.png", image_bytes(3))])  # the same ZIP again, and one more
    assert again["message"] == ("Imported 3 images; 2 of them are exact copies of images already here (Remove "
                                "duplicates takes them out).")
    assert again["result"]["copies"] == ["a_2.png", "b_2.png"]
    assert upload(client, dataset_id, [("a.png", image_bytes(1))])["message"] == (
        "Imported 1 image; it is an exact copy of an image already here (Remove duplicates takes it out).")


def test_pages_render(client, dataset_id):
    assert "New dataset" in client.get("/").get_data(as_text=True)
    page = client.get(f"/d/{dataset_id}").get_data(as_text=True)
    assert "Test Set" in page and "chunk_bytes" in page and "gallery.js" in page
    assert client.get("/d/missing", headers={"Accept": "application/json"}).status_code == 404


def test_chunked_upload_resume_and_import(make_settings):
    import app as datasets_app

    app = datasets_app.create_app(make_settings(UPLOAD_CHUNK_MB=1))
    c = app.test_client()
    did = c.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    entries = [(f"img{i}.png", image_bytes(i, size=(600, 600))) for i in range(3)]
    entries.append(("pad.txt", os.urandom(1_500_000).hex().encode()[:2_400_000]))
    archive = zip_bytes(entries, compression=zipfile.ZIP_STORED)
    size, chunk = len(archive), 1 << 20
    session = c.post(f"/api/datasets/{did}/uploads", json={"filename": "big.zip", "size": size})
    assert session.status_code == 201
    info = session.get_json()
    assert info["chunk_size"] == chunk and info["chunks"] == -(-size // chunk) and info["missing"]
    sid = info["id"]
    url = f"/api/datasets/{did}/uploads/{sid}"
    pieces = [archive[i:i + chunk] for i in range(0, size, chunk)]
    # first and last chunk arrive, the middle ones are "lost" with a dropped connection
    assert c.put(f"{url}/chunks/0", data=pieces[0]).status_code == 200
    assert c.put(f"{url}/chunks/{len(pieces) - 1}", data=pieces[-1]).status_code == 200
    status = c.get(url).get_json()
    assert status["received"] == [0, len(pieces) - 1] and status["missing"] == list(range(1, len(pieces) - 1))
    refused = c.post(f"{url}/complete")
    assert refused.status_code == 409 and "missing" in refused.get_json()["error"]
    assert c.put(f"{url}/chunks/1", data=pieces[1][:-5]).status_code == 422  # short chunk refused
    assert c.put(f"{url}/chunks/99", data=b"x").status_code == 422
    assert c.put(f"{url}/chunks/1", data=pieces[1] + b"extra").status_code == 413
    for n in status["missing"]:
        assert c.put(f"{url}/chunks/{n}", data=pieces[n]).status_code == 200
    assert c.put(f"{url}/chunks/0", data=pieces[0]).status_code == 200  # re-sending is harmless
    started = c.post(f"{url}/complete")
    assert started.status_code == 202
    job = wait_job(c, f"/api/datasets/{did}/imports/{started.get_json()['id']}")
    assert job["status"] == "completed" and sorted(job["result"]["imported"]) == ["img0.png", "img1.png", "img2.png"]
    assert c.get(url).status_code == 404  # the session is cleaned up
    assert list((app.config["STUDIO_WORKSPACE"].uploads).iterdir()) == []
    assert c.get(f"/api/datasets/{did}/uploads/not-a-session").status_code == 404


def test_batch_import_of_sessions(client, dataset_id):
    sids = []
    for i in range(2):
        data = image_bytes(i)
        sid = client.post(f"/api/datasets/{dataset_id}/uploads",
                          json={"filename": f"p{i}.png", "size": len(data)}).get_json()["id"]
        assert client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=data).status_code == 200
        sids.append(sid)
    job = client.post(f"/api/datasets/{dataset_id}/imports", json={"sessions": sids}).get_json()
    done = wait_job(client, f"/api/datasets/{dataset_id}/imports/{job['id']}")
    assert done["result"]["imported"] == ["p0.png", "p1.png"]
    assert client.post(f"/api/datasets/{dataset_id}/imports", json={"sessions": ["zz"]}).status_code == 404


def test_images_list_filters_and_pagination(client, dataset_id):
    files = [(f"img{i}.png", image_bytes(i, size=(520, 520))) for i in range(12)]
    files += [("img3.txt", b"a red car"), ("img5.txt", b"a blue car"), ("tiny.png", image_bytes(50, size=(40, 40)))]
    upload(client, dataset_id, files)
    base = f"/api/datasets/{dataset_id}/images"
    first = client.get(f"{base}?offset=0&limit=5").get_json()
    assert first["total"] == 13 and [i["name"] for i in first["images"]] == ["img0.png", "img1.png", "img2.png",
                                                                             "img3.png", "img4.png"]
    second = client.get(f"{base}?offset=10&limit=5").get_json()
    assert [i["name"] for i in second["images"]] == ["img10.png", "img11.png", "tiny.png"]
    assert client.get(f"{base}?filter=uncaptioned").get_json()["total"] == 11
    assert [i["name"] for i in client.get(f"{base}?q=CAR").get_json()["images"]] == ["img3.png", "img5.png"]
    assert [i["name"] for i in client.get(f"{base}?q=blue&filter=captioned").get_json()["images"]] == ["img5.png"]
    small = client.get(f"{base}?filter=small").get_json()
    assert [i["name"] for i in small["images"]] == ["tiny.png"] and small["counts"]["flagged"] == 1
    assert client.get(f"{base}?filter=bogus").status_code == 400
    assert client.get(f"{base}?limit=abc").status_code == 400
    removed = client.post(f"/api/datasets/{dataset_id}/images/remove-flagged", json={"kind": "small"}).get_json()
    assert removed["deleted"] == ["tiny.png"]


def test_exif_orientation_thumbnail_and_dimensions(client, dataset_id):
    upload(client, dataset_id, [("rot.jpg", image_bytes(1, size=(80, 40), fmt="JPEG", exif_orientation=6))])
    image = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"][0]
    assert (image["width"], image["height"]) == (40, 80)  # orientation 6: rotated a quarter turn
    thumb = client.get(f"/api/datasets/{dataset_id}/thumbs/rot.jpg")
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"
    assert Image.open(io.BytesIO(thumb.data)).size == (40, 80)
    full = client.get(f"/api/datasets/{dataset_id}/images/rot.jpg")
    assert full.status_code == 200 and full.data[:2] == b"\xff\xd8"
    assert client.get(f"/api/datasets/{dataset_id}/images/missing.png").status_code == 404


def test_near_duplicates_are_flagged(client, dataset_id):
    original = image_bytes(3, size=(600, 600))
    resized = io.BytesIO()
    Image.open(io.BytesIO(original)).resize((580, 580)).convert("RGB").save(resized, "JPEG", quality=80)
    upload(client, dataset_id, [("a.png", original), ("b.jpg", resized.getvalue()),
                                ("c.png", image_bytes(9, (600, 600)))])
    flags = {i["name"]: i["flags"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    assert flags["b.jpg"] == {"similar_to": "a.png"} and flags["a.png"] == {} and flags["c.png"] == {}
    removed = client.post(f"/api/datasets/{dataset_id}/images/remove-flagged", json={"kind": "similar"}).get_json()
    assert removed["deleted"] == ["b.jpg"]


def test_caption_edit_conflict_and_delete(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("b.png", image_bytes(2))])
    url = f"/api/datasets/{dataset_id}/captions/a.png"
    saved = client.put(url, json={"caption": "  a cat  ", "base_version": 0}).get_json()
    assert saved["caption"] == "a cat" and saved["version"] > 0
    assert (studio_root / "datasets" / dataset_id / "a.txt").read_text() == "a cat"
    stale = client.put(url, json={"caption": "a dog", "base_version": 0})
    assert stale.status_code == 409 and stale.get_json()["current"]["caption"] == "a cat"
    newer = client.put(url, json={"caption": "a dog", "base_version": saved["version"]})
    assert newer.status_code == 200
    assert client.put(url, json={"caption": 5}).status_code == 422
    assert client.put(url, json={"caption": "x" * 10001}).status_code == 422
    assert client.put(f"/api/datasets/{dataset_id}/captions/zzz.png", json={"caption": "x"}).status_code == 404
    cleared = client.put(url, json={"caption": "   "}).get_json()
    assert cleared["version"] == 0 and not (studio_root / "datasets" / dataset_id / "a.txt").exists()
    client.put(url, json={"caption": "back"})
    deleted = client.post(f"/api/datasets/{dataset_id}/images/delete", json={"names": ["a.png", "nope.png"]})
    assert deleted.get_json()["deleted"] == ["a.png"]
    folder = studio_root / "datasets" / dataset_id
    assert not (folder / "a.png").exists() and not (folder / "a.txt").exists()
    assert not (folder / ".thumbs" / "a.png.webp").exists()
    assert client.delete(f"/api/datasets/{dataset_id}/images/b.png").get_json()["deleted"] == ["b.png"]
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["images"] == 0


def test_find_replace_preview_apply_and_undo(client, dataset_id):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a Red car, red sky"),
                                ("b.png", image_bytes(2)), ("b.txt", b"a green car"), ("c.png", image_bytes(3))])
    url = f"/api/datasets/{dataset_id}/captions/replace"
    preview = client.post(url, json={"find": "red", "replace": "blue"}).get_json()
    assert preview["applied"] is False and preview["images"] == 1 and preview["replacements"] == 2
    assert preview["rows"][0]["after"] == "a blue car, blue sky"
    assert client.get(f"/api/datasets/{dataset_id}/images?q=red").get_json()["total"] == 1  # nothing written
    exact = client.post(url, json={"find": "red", "replace": "blue", "case_sensitive": True}).get_json()
    assert exact["replacements"] == 1
    literal = client.post(url, json={"find": "c.r", "replace": "x"}).get_json()
    assert literal["replacements"] == 0  # the dot is literal without regex
    assert client.post(url, json={"find": "c.r", "replace": "x", "regex": True}).get_json()["replacements"] == 2
    regex = client.post(url, json={"find": r"(\w+) car", "replace": r"car (\1)", "regex": True}).get_json()
    assert {r["after"] for r in regex["rows"]} == {"a car (Red), red sky", "a car (green)"}
    bad = client.post(url, json={"find": "(", "regex": True})
    assert bad.status_code == 422 and "regular expression" in bad.get_json()["error"]
    assert client.post(url, json={"find": ""}).status_code == 422
    applied = client.post(url, json={"find": "car", "replace": "bike", "apply": True}).get_json()
    assert applied["applied"] and applied["images"] == 2
    captions = {i["name"]: i["caption"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    assert captions == {"a.png": "a Red bike, red sky", "b.png": "a green bike", "c.png": ""}
    assert client.get(f"/api/datasets/{dataset_id}/captions/undo").get_json()["op"] == "find/replace"
    undone = client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()
    assert undone["restored"] == 2
    captions = {i["name"]: i["caption"] for i in client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]}
    assert captions == {"a.png": "a Red car, red sky", "b.png": "a green car", "c.png": ""}
    assert client.post(f"/api/datasets/{dataset_id}/captions/undo").status_code == 409


def test_prepend_append_and_undo(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat"), ("b.png", image_bytes(2))])
    url = f"/api/datasets/{dataset_id}/captions/affix"
    assert client.post(url, json={}).status_code == 422
    result = client.post(url, json={"prepend": "photo", "append": "film grain"}).get_json()
    assert result["changed"] == 2
    folder = studio_root / "datasets" / dataset_id
    assert (folder / "a.txt").read_text() == "photo, a cat, film grain"
    assert (folder / "b.txt").read_text() == "photo, film grain"
    client.post(f"/api/datasets/{dataset_id}/captions/undo")
    assert (folder / "a.txt").read_text() == "a cat" and not (folder / "b.txt").exists()


def test_undo_of_a_bulk_change_keeps_the_captions_edited_by_hand_since(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat"), ("b.png", image_bytes(2)),
                                ("b.txt", b"a dog"), ("c.png", image_bytes(3)), ("c.txt", b"a cow")])
    client.post(f"/api/datasets/{dataset_id}/captions/affix", json={"prepend": "photo"})
    client.put(f"/api/datasets/{dataset_id}/captions/b.png", json={"caption": "my careful hand-written caption"})
    client.put(f"/api/datasets/{dataset_id}/captions/c.png", json={"caption": ""})  # cleared on purpose
    undone = client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()
    assert undone["restored"] == 1 and undone["kept"] == ["b.png", "c.png"]
    folder = studio_root / "datasets" / dataset_id
    assert (folder / "a.txt").read_text() == "a cat"
    assert (folder / "b.txt").read_text() == "my careful hand-written caption" and not (folder / "c.txt").exists()


def test_export_layout_hard_links_and_immutable_versions(client, dataset_id, studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat"), ("b.jpg", image_bytes(2, fmt="JPEG")),
                                ("c.webp", image_bytes(3, fmt="WEBP")), ("c.txt", b"tok standing")])
    started = client.post(f"/api/datasets/{dataset_id}/export", json={"name": "Mia v1"})
    assert started.status_code == 202
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "completed" and job["result"]["name"] == "mia-v1"
    out = studio_root / "trainer" / "datasets" / "mia-v1"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.txt", "b.jpg", "b.txt", "c.txt", "c.webp",
                                                     "dataset.json"]
    assert (out / "a.txt").read_text().strip() == "tok, a cat"
    assert (out / "b.txt").read_text().strip() == "tok"
    assert (out / "c.txt").read_text().strip() == "tok standing"  # already has the trigger word
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["name"] == "mia-v1" and meta["trigger_word"] == "tok" and meta["images"] == 3
    assert meta["source_dataset_id"] == dataset_id and meta["exported_at"]
    first = job["result"]["version"]
    assert meta["version"] == first and job["dataset_version"] == first and len(first) == 16
    assert out.is_symlink() and out.resolve() == studio_root / "trainer" / "datasets" / ".versions" / first
    source = studio_root / "datasets" / dataset_id / "a.png"
    assert os.path.samefile(out / "a.png", source)
    # the same content exports to the same version
    client.post(f"/api/datasets/{dataset_id}/export", json={"name": "Mia v1"})
    assert wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")["result"]["version"] == first
    # re-export after a delete: a new version; the name points at it, the old version is untouched
    client.delete(f"/api/datasets/{dataset_id}/images/b.jpg")
    client.post(f"/api/datasets/{dataset_id}/export", json={"name": "Mia v1"})
    job = wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")
    assert job["status"] == "completed" and job["result"]["version"] != first
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.txt", "c.txt", "c.webp", "dataset.json"]
    versions = studio_root / "trainer" / "datasets" / ".versions"
    assert sorted(p.name for p in versions.iterdir()) == sorted([first, job["result"]["version"]])  # no leftovers
    assert "b.jpg" in {p.name for p in (versions / first).iterdir()}
    assert sorted(p.name for p in out.parent.iterdir()) == [".versions", "mia-v1"]
    last = client.get(f"/api/datasets/{dataset_id}").get_json()["last_export"]
    assert last["name"] == "mia-v1" and last["version"] == job["result"]["version"]


def test_an_export_name_of_another_dataset_is_not_taken_over(client, dataset_id):
    upload(client, dataset_id, [("a.png", image_bytes(1))])
    client.post(f"/api/datasets/{dataset_id}/export", json={"name": "cats"})
    assert wait_job(client, f"/api/datasets/{dataset_id}/export", key="job")["status"] == "completed"
    other = client.post("/api/datasets", json={"name": "Dogs"}).get_json()["id"]
    upload(client, other, [("d.png", image_bytes(2))])
    refused = client.post(f"/api/datasets/{other}/export", json={"name": "cats"})
    assert refused.status_code == 409
    body = refused.get_json()
    assert body["error"] == ("trainer/datasets/cats is the export of 'Test Set': exporting this dataset there would "
                             "make its jobs train on these images. Export as cats-2 instead (or replace it on "
                             "purpose).")
    assert body["details"][0]["free"] == "cats-2"
    client.post(f"/api/datasets/{other}/export", json={"name": "cats", "replace": True})  # on purpose
    job = wait_job(client, f"/api/datasets/{other}/export", key="job")
    assert job["status"] == "completed" and job["result"]["name"] == "cats"


def test_export_of_empty_dataset_is_refused(client, dataset_id):
    response = client.post(f"/api/datasets/{dataset_id}/export", json={})
    assert response.status_code == 409 and "no images" in response.get_json()["error"]


def test_apply_trigger():
    assert apply_trigger("a cat", "") == "a cat"
    assert apply_trigger("a cat", "m1a") == "m1a, a cat"
    assert apply_trigger("photo of M1A smiling", "m1a") == "photo of M1A smiling"
    assert apply_trigger("m1ab cat", "m1a") == "m1a, m1ab cat"
    assert apply_trigger("", "m1a") == "m1a"


def test_download_streams_a_zip(client, dataset_id):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a cat"), ("b.png", image_bytes(2))])
    response = client.get(f"/api/datasets/{dataset_id}/download")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.is_streamed and "test-set.zip" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    assert sorted(archive.namelist()) == ["a.png", "a.txt", "b.png", "dataset.json"]
    assert archive.read("a.txt") == b"a cat" and archive.testzip() is None


def test_jobs_of_a_dead_process_read_as_interrupted_after_a_restart(client, dataset_id, studio_root, make_settings):
    import app as datasets_app

    store = JobStore(studio_root / "studio.db")
    job, _ = store.create("caption", dataset=dataset_id, total=9, owner="999999999:1")
    store.start(job.id, "999999999:1")
    store.progress(job.id, {"done": 3})
    datasets_app.create_app(make_settings())  # a restart
    state = client.get(f"/api/datasets/{dataset_id}/caption").get_json()["job"]
    assert state["id"] == job.id and state["status"] == "interrupted" and state["resumable"]
    assert "restart" in state["message"] and state["done"] == 3


def test_password_protects_images_and_api(make_settings):
    import app as datasets_app

    app = datasets_app.create_app(make_settings(STUDIO_PASSWORD="pw"))
    c = app.test_client()
    assert c.get("/api/datasets").status_code == 401
    auth = {"Authorization": "Bearer pw"}
    did = c.post("/api/datasets", json={"name": "t"}, headers=auth).get_json()["id"]
    assert c.get(f"/api/datasets/{did}/thumbs/a.png").status_code == 401
    assert c.get(f"/api/datasets/{did}/download").status_code == 401


def test_a_dataset_saved_with_its_own_name_is_not_refused_when_an_older_one_has_it_too(client, studio_root):
    first = client.post("/api/datasets", json={"name": "My cat"}).get_json()["id"]
    second = client.post("/api/datasets", json={"name": "Other"}).get_json()["id"]
    # two datasets of one name, as a workspace made before names were free has them
    store = DatasetStore(Workspace(studio_root))
    dataset = store.get(second)
    meta = dataset.meta()
    meta["name"] = "My cat"
    dataset.save_meta(meta)
    kept = client.patch(f"/api/datasets/{second}", json={"name": "My cat", "trigger_word": "cat2"})
    assert kept.status_code == 200, kept.get_json()
    assert kept.get_json()["name"] == "My cat" and kept.get_json()["trigger_word"] == "cat2"
    # a real rename to the other's name is still refused
    assert client.patch(f"/api/datasets/{second}", json={"name": "MY CAT"}).status_code == 409
    assert client.patch(f"/api/datasets/{first}", json={"name": "My cat"}).status_code == 200
