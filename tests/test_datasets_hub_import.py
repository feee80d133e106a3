"""Import a Hugging Face dataset from its link: the whole repo, a folder or a file, through huggingface-hub with
the pod's HF_TOKEN, at one commit, with byte progress; captions from `.txt` files and from metadata.jsonl/.csv,
paired by folder; every hub failure a sentence. A local server speaking the hub's protocol stands in for the hub."""

from __future__ import annotations

import json
import time

import pytest

import app as datasets_app
from app import hub_import
from studio.web import ApiError
from tests.fake_hub import COMMIT, FakeHub
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes
from tests.test_datasets_url_import import _dataset, _import

HF = "https://huggingface.co/datasets"
REPO = {
    "README.md": b"# Portraits\n",
    ".gitattributes": b"*.png filter=lfs\n",
    "train/001.png": image_bytes(1, size=(96, 96)),
    "train/001.txt": b"tok, a woman in a red coat",
    "train/002.png": image_bytes(2, size=(96, 96)),
    "extra/001.png": image_bytes(3, size=(96, 96)),  # the same stem as train/001: its own caption
    "extra/003.png": image_bytes(7, size=(96, 96)),
    "extra/003.txt": b"tok, a dog",  # wins over its metadata row
    "extra/metadata.jsonl": b'{"file_name": "001.png", "text": "tok, a man in a hat"}\n'
                            b'{"file_name": "003.png", "text": "tok, an old caption"}\n',
    "packs/more.zip": zip_bytes([("more/a.png", image_bytes(4, size=(96, 96))),
                                 ("more/metadata.csv", b"file_name,caption\na.png,\"tok, a child, smiling\"\n")]),
}


TABLES = {  # what datasets.push_to_hub makes: the images inside Parquet files, one per split
    "README.md": b"---\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n---\n",
    "data/train-00000-of-00001.parquet": parquet_bytes([
        {"image": (image_bytes(11, size=(96, 96)), "a.png"), "text": "tok, a red door"},
        {"image": (image_bytes(12, size=(96, 96)), None), "text": "tok, a blue door"}], features=HF_FEATURES),
    "data/test-00000-of-00001.parquet": parquet_bytes([
        {"image": (image_bytes(13, size=(96, 96)), "b.png"), "text": "tok, a green door"}], features=HF_FEATURES),
}


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets HF_HUB_OFFLINE=1 for everything else
    with FakeHub() as server:
        server.add("datasets/me/portraits", REPO, lfs=("train/001.png", "packs/more.zip"))
        server.add("datasets/me/tables", TABLES, lfs=("data/train-00000-of-00001.parquet",))
        server.add("datasets/me/gated", {"a.png": image_bytes(5)})
        server.gated.add("datasets/me/gated")
        server.add("datasets/me/big", {"huge.png": b"\0" * (2 * 2**20)}, lfs=("huge.png",))
        server.add("datasets/me/slow", {"a.png": image_bytes(6), "set.zip": b"PK\x03\x04" + b"\0" * 600_000},
                   lfs=("set.zip",))
        yield server


@pytest.fixture
def client(make_settings, hub):
    settings = make_settings(HF_ENDPOINT=hub.url, HF_TOKEN="hf_pod_token", MAX_UPLOAD_MB="1")
    return datasets_app.create_app(settings).test_client()


def _captions(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def test_a_whole_dataset_imports_with_captions_paired_by_folder(client, hub):
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/portraits")
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, dataset_id) == {
        "001.png": "tok, a man in a hat",  # extra/001.png: its folder's metadata.jsonl, not train/001.txt
        "001_2.png": "tok, a woman in a red coat",  # train/001.png and train/001.txt
        "002.png": "",
        "003.png": "tok, a dog",
        "a.png": "tok, a child, smiling",  # a metadata.csv inside a ZIP of the repo
    }
    assert job["result"]["source"] == {"url": f"{HF}/me/portraits", "dataset": "me/portraits", "files": 8}
    wanted = sum(len(data) for name, data in REPO.items() if not name.endswith((".md", ".gitattributes")))
    assert job["bytes_done"] == job["bytes_total"] == wanted  # byte progress over every file
    downloads = {r["path"] for r in hub.file_requests()}
    assert "/datasets/me/portraits/resolve/" + COMMIT + "/README.md" not in downloads  # only what imports
    assert all(f"/resolve/{COMMIT}/" in path for path in downloads)  # every file at the one commit
    assert all(r["auth"] == "Bearer hf_pod_token" for r in hub.requests)  # private datasets work


def test_a_folder_or_a_file_of_a_dataset_imports_alone(client):
    folder = _dataset(client)
    assert _import(client, folder, f"{HF}/me/portraits/tree/main/extra")["status"] == "completed"
    assert _captions(client, folder) == {"001.png": "tok, a man in a hat", "003.png": "tok, a dog"}
    single = _dataset(client)
    assert _import(client, single, f"{HF}/me/portraits/blob/main/packs/more.zip")["status"] == "completed"
    assert _captions(client, single) == {"a.png": "tok, a child, smiling"}
    image = _dataset(client)
    assert _import(client, image, f"{HF}/me/portraits/resolve/main/train/001.png?download=true")["status"] == \
        "completed"
    assert list(_captions(client, image)) == ["001.png"]


def test_a_dataset_kept_in_parquet_files_imports_row_by_row(client):
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/tables")
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, dataset_id) == {"a.png": "tok, a red door", "b.png": "tok, a green door",
                                             "train-00000-of-00001-000001.png": "tok, a blue door"}
    one_split = _dataset(client)  # a split alone: the link of its file
    job = _import(client, one_split, f"{HF}/me/tables/blob/main/data/test-00000-of-00001.parquet")
    assert job["status"] == "completed" and _captions(client, one_split) == {"b.png": "tok, a green door"}


def test_a_viewer_link_imports_the_split_it_shows(client):
    split = _dataset(client)  # data/test-00000-of-00001.parquet only
    job = _import(client, split, f"{HF}/me/tables/viewer/default/test")
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, split) == {"b.png": "tok, a green door"}
    assert job["result"]["source"]["files"] == 1 and job["result"]["source"]["split"] == "test"
    folder = _dataset(client)  # a split kept as a folder, its metadata.jsonl with it
    assert _import(client, folder, f"{HF}/me/portraits/viewer/default/extra")["status"] == "completed"
    assert _captions(client, folder) == {"001.png": "tok, a man in a hat", "003.png": "tok, a dog"}
    unknown = _dataset(client)  # nothing is named for the split: the whole dataset
    assert _import(client, unknown, f"{HF}/me/tables/viewer/default/validation")["status"] == "completed"
    assert len(_captions(client, unknown)) == 3


@pytest.mark.parametrize("url, words", [
    (f"{HF}/me/nothing-here", "me/nothing-here was not found on the hub, or it is private and HF_TOKEN is missing"),
    (f"{HF}/me/gated", "me/gated is gated: accept its terms on the hub and set HF_TOKEN"),
    (f"{HF}/me/portraits/tree/v9", "me/portraits has no revision 'v9'"),
    (f"{HF}/me/portraits/tree/main/missing", "me/portraits has no folder 'missing' at main"),
    (f"{HF}/me/portraits/blob/main/train/009.png", "me/portraits has no file 'train/009.png' at main"),
    (f"{HF}/me/big", "over the limit of 1 MB (MAX_UPLOAD_MB): link one folder of it"),
])
def test_what_cannot_be_imported_from_the_hub_says_why_and_adds_nothing(client, hub, url, words):
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, url)
    assert job["status"] == "failed" and words in job["error"], job
    assert _captions(client, dataset_id) == {}
    if url.endswith("/big"):
        assert hub.file_requests() == []  # refused from the listing, before a byte was downloaded


def test_an_unreachable_hub_or_an_offline_studio_is_a_sentence(make_settings, monkeypatch):
    settings = make_settings(HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens there
    client = datasets_app.create_app(settings).test_client()
    dataset_id = _dataset(client)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    job = _import(client, dataset_id, f"{HF}/me/portraits")
    assert job["status"] == "failed" and "The hub could not be reached for me/portraits" in job["error"], job
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    job = _import(client, dataset_id, f"{HF}/me/portraits")
    assert job["status"] == "failed" and "runs offline (HF_HUB_OFFLINE=1)" in job["error"], job


def test_deleting_the_dataset_stops_a_download_in_progress(client, hub):
    hub.slow[("datasets/me/slow", "set.zip")] = 60.0  # a minute per 64 KB: the ZIP would take ten
    dataset_id = _dataset(client)
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": f"{HF}/me/slow"})
    job_url = f"/api/datasets/{dataset_id}/imports/{response.get_json()['id']}"
    wait_job(client, job_url, until=lambda job: job.get("done") == 1)  # a.png is in, the ZIP is on its way
    assert client.delete(f"/api/datasets/{dataset_id}").status_code in (200, 202)
    from app import context

    with client.application.app_context():
        jobs = context.jobs()
        deadline = time.monotonic() + 30
        while (job := jobs.get(response.get_json()["id"])).status in {"queued", "running"}:
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
    assert job.status == "stopped"  # without waiting for the ZIP's download to end


@pytest.mark.parametrize("url, expected", [
    (f"{HF}/me/cats", hub_import.HubLink("me/cats", "main", "")),
    (f"{HF}/me/cats/viewer/default/train", hub_import.HubLink("me/cats", "main", "", config="default",
                                                              split="train")),
    (f"{HF}/me/cats/viewer", hub_import.HubLink("me/cats", "main", "")),
    (f"{HF}/me/cats/tree/main/photos/2024", hub_import.HubLink("me/cats", "main", "photos/2024")),
    ("https://hf.co/datasets/me/cats/blob/v2/all%20cats.zip",
     hub_import.HubLink("me/cats", "v2", "all cats.zip", True)),
    ("https://huggingface.co/me/cats-lora/blob/main/cats.zip", None),  # a model's file: a plain download
    ("https://example.com/datasets/me/cats", None),
])
def test_dataset_links_are_read(url, expected):
    assert hub_import.hub_link(url) == expected


@pytest.mark.parametrize("url, words", [
    (f"{HF}/me/cats/discussions/3", "Link the dataset itself, one of its folders"),
    (f"{HF}/me/cats/tree/main/../../other", "leaves the dataset"),
    (f"{HF}/me/ca$ts", "is not a Hugging Face dataset name"),
    (f"{HF}/me/cats/blob/main", "names no file"),
])
def test_a_dataset_link_that_cannot_be_followed_is_refused_at_once(client, url, words):
    with pytest.raises(ApiError, match=words.replace("$", r"\$")):
        hub_import.hub_link(url)
    dataset_id = _dataset(client)
    response = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url})
    assert response.status_code == 422 and words in response.get_json()["error"]


def test_a_repo_listing_a_file_outside_the_download_folder_imports_nothing(client, hub, monkeypatch):
    from huggingface_hub import RepoFile

    def listing(*args, **kwargs):
        return [RepoFile(path="../escape.png", size=10, oid="x")]

    monkeypatch.setattr("huggingface_hub.HfApi.list_repo_tree", listing)
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/portraits")
    assert job["status"] == "failed" and "unsafe path ('../escape.png')" in job["error"], job
    assert hub.file_requests() == []


def test_metadata_files_give_captions_and_say_what_they_could_not_read(tmp_path):
    from app.caption_files import metadata_captions

    jsonl = tmp_path / "metadata.jsonl"
    jsonl.write_text(json.dumps({"file_name": "sub/a.png", "caption": ["", "tok, first"]}) + "\n"
                     + "not json\n" + json.dumps({"file_name": "b.png", "prompt": "tok, b"}) + "\n"
                     + json.dumps({"file_name": "c.png"}) + "\n")
    captions, problem = metadata_captions(jsonl, "set/metadata.jsonl")
    assert captions == {("set/sub", "a"): "tok, first", ("set", "b"): "tok, b"}
    assert problem == "2 row(s) without a file_name and a caption were left out"
    empty = tmp_path / "metadata.csv"
    empty.write_text("name,label\nx.png,cat\n")
    assert metadata_captions(empty, "metadata.csv") == (
        {}, "no row has a file_name and a caption (text, caption, prompt, description): its captions were not imported")


def test_a_dataset_of_clips_imports_their_sharpest_frames(client, hub):
    from tests.videos import video_bytes

    hub.add("datasets/me/clips", {"clips/dog.mp4": video_bytes([1, 2]), "clips/dog.txt": b"tok, my dog",
                                  "notes.md": b"# clips"}, lfs=("clips/dog.mp4",))
    counted = client.post("/api/link-check", json={"url": f"{HF}/me/clips"}).get_json()
    assert (counted["videos"], counted["images"], counted["captions"]) == (1, 0, 1)
    dataset_id = _dataset(client)
    job = _import(client, dataset_id, f"{HF}/me/clips")
    assert job["status"] == "completed", job.get("error")
    assert _captions(client, dataset_id) == {"dog-00m00.7s.jpg": "tok, my dog", "dog-00m02.7s.jpg": "tok, my dog"}


def test_a_stop_that_comes_back_as_the_downloads_own_error_is_a_stop(make_settings, hub, tmp_path, monkeypatch):
    """huggingface-hub's Xet client runs the progress callback in its own threads: the stop raised there came back
    as the download's error, and the job (a serverless one, or an import) ended as a failed download."""
    import threading

    from studio.job_reporter import QuietReporter
    from studio.jobs import JobStopped

    settings = make_settings(HF_ENDPOINT=hub.url, HF_TOKEN="hf_pod_token")
    stop = threading.Event()

    def fetch_file(*args, **kwargs):
        stop.set()
        raise RuntimeError("Xet download failed: callback raised")

    monkeypatch.setattr(hub_import, "fetch_file", fetch_file)
    with pytest.raises(JobStopped):
        hub_import.download(QuietReporter(stop=stop), hub_import.hub_link(f"{HF}/me/portraits"), settings, tmp_path)
    stop.clear()  # the same error without a stop is the download's failure, said in a sentence
    with pytest.raises(hub_import.JobError, match="portraits"):
        hub_import.download(QuietReporter(stop=threading.Event()), hub_import.hub_link(f"{HF}/me/portraits"),
                            settings, tmp_path / "again")
