"""The serverless handler's input checks and dataset preparation (no training here; see test_serverless_e2e)."""

from __future__ import annotations

import functools
import http.server
import io
import threading
import zipfile

import pytest
from PIL import Image

from serverless.dataset import DatasetInputError, fetch_dataset, parse_dataset_spec
from serverless.handler import ProgressReporter, handler
from serverless.images import prepare_images
from tests.moto_s3 import MotoS3
from tests.parquet_files import HF_FEATURES, parquet_bytes
from tests.test_datasets_hub_import import hub  # noqa: F401 - the stand-in hub, a fixture
from tests.test_datasets_image_formats import heic_photo
from tests.videos import video_bytes


def image_bytes(fmt="PNG", size=(40, 32), color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def worker_env(monkeypatch, studio_root):
    """The worker reads its settings from the environment, like on RunPod."""
    for name in ("S3_ENDPOINT_URL", "S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_OUTPUT_PREFIX",
                 "R2_ENDPOINT_URL", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_OUTPUT_PREFIX",
                 "RUNPOD_WEBHOOK_POST_OUTPUT", "STUDIO_DEMO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STUDIO_ROOT", str(studio_root))
    return monkeypatch


GOOD_CONFIG = {"name": "anna", "steps": 2, "resolutions": [64]}


@pytest.mark.parametrize("job_input, field", [
    ({"dataset": {"prefix": "x"}}, "job_config"),
    ({"job_config": GOOD_CONFIG}, "dataset"),
    ({"job_config": GOOD_CONFIG, "dataset": {"prefix": "x"}, "surprise": 1}, "surprise"),
    ({"job_config": {**GOOD_CONFIG, "stepz": 5}, "dataset": {"prefix": "x"}}, "stepz"),
    ({"job_config": {**GOOD_CONFIG, "steps": -1}, "dataset": {"prefix": "x"}}, "steps"),
    ({"job_config": GOOD_CONFIG, "dataset": {"prefix": "x"}, "recipe": "sdxl-someday"}, "recipe"),
    ({"job_config": GOOD_CONFIG, "dataset": {"url": "file:///etc/passwd"}}, "dataset.url"),
    ({"job_config": GOOD_CONFIG, "dataset": {"url": "https://x/a.zip", "prefix": "p"}}, None),
    ({"job_config": GOOD_CONFIG, "dataset": {"bucket": "b"}}, "dataset.prefix"),
    ({"job_config": "steps=3", "dataset": {"prefix": "x"}}, "job_config"),
    ({"job_config": GOOD_CONFIG, "dataset": {"prefix": "x"}, "datasets": [{"prefix": "y"}]}, "dataset"),
    ({"job_config": GOOD_CONFIG, "datasets": []}, "datasets"),
    ({"job_config": GOOD_CONFIG, "datasets": [{"prefix": f"s{i}"} for i in range(9)]}, "datasets"),
    ({"job_config": GOOD_CONFIG, "datasets": ["sets/a"]}, "datasets[0]"),
    ({"job_config": GOOD_CONFIG, "datasets": [{"prefix": "a"}, {"prefix": "b", "repeats": 0}]}, "datasets[1].repeats"),
    ({"job_config": GOOD_CONFIG, "datasets": [{"prefix": "a", "repeats": "3"}]}, "datasets[0].repeats"),
    ({"job_config": GOOD_CONFIG, "datasets": [{"bucket": "b"}]}, "datasets[0].prefix"),
    ({"job_config": GOOD_CONFIG, "datasets": [{"url": "file:///etc/passwd"}]}, "datasets[0].url"),
    ({"job_config": GOOD_CONFIG, "dataset": {"prefix": "x"}, "start_lora": {"key": "a.ckpt"}}, "start_lora"),
    ({"job_config": GOOD_CONFIG, "dataset": {"prefix": "x"}, "start_lora": {"url": "file:///a.safetensors"}},
     "start_lora"),
    ({"job_config": GOOD_CONFIG, "dataset": {"prefix": "x"}, "start_lora": {"key": "a.safetensors", "url": "x"}},
     "start_lora"),
    ({"job_config": {**GOOD_CONFIG, "init_lora": "mine"}, "dataset": {"prefix": "x"}}, "init_lora"),
])
def test_bad_input_returns_structured_error(worker_env, job_input, field):
    result = handler({"id": "bad-1", "input": job_input})
    assert set(result) == {"error", "details"}
    assert result["error"].endswith(".")
    if field:
        assert field in [d["field"] for d in result["details"]]


@pytest.mark.parametrize("spec, token, field, words", [
    ({"repo": "a/b/c"}, "hf_x", "hub.repo", "is not a valid repo name"),
    ({"repo": "anna-lora", "private": "no"}, "hf_x", "hub.private", "must be true or false"),
    ({"repo": "anna-lora", "public": True}, "hf_x", "hub", "`hub` must be"),
    ("anna-lora", "hf_x", "hub", "`hub` must be"),
    ({"repo": "anna-lora"}, None, "hub", "Set HF_TOKEN"),
])
def test_a_hub_publication_is_checked_before_anything_downloads(worker_env, spec, token, field, words):
    if token:
        worker_env.setenv("HF_TOKEN", token)
    else:
        worker_env.delenv("HF_TOKEN", raising=False)
    result = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "x"}, "hub": spec}})
    assert words in result["error"] and result["details"][0]["field"] == field, result


def test_non_object_input(worker_env):
    assert "error" in handler({"id": "x", "input": ["not", "an", "object"]})
    assert "error" in handler({"id": "x"})


def test_storage_not_configured_is_clear(worker_env):
    result = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/a"}}})
    assert "S3_BUCKET" in result["error"]


def test_wrong_secret_fails_before_any_download(worker_env):
    moto = MotoS3().start()
    try:
        moto.make_bucket("worker-out")
        secret = "TotallyWrongSecretValue1234567890abcdefgh"
        for key, value in moto.env(S3_BUCKET="worker-out", S3_SECRET_ACCESS_KEY=secret).items():
            worker_env.setenv(key, value)
        with moto.checking_credentials():
            result = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/a"}}})
        assert "S3_SECRET_ACCESS_KEY" in result["error"]
        assert secret not in repr(result)
    finally:
        moto.stop()


def test_empty_prefix_is_an_input_error(worker_env):
    moto = MotoS3().start()
    try:
        moto.make_bucket("worker-empty")
        for key, value in moto.env(S3_BUCKET="worker-empty").items():
            worker_env.setenv(key, value)
        result = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "nothing/here"}}})
        assert "Nothing was found" in result["error"]
    finally:
        moto.stop()


def test_prepare_images_decodes_and_skips(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    (raw / "a.png").write_bytes(image_bytes())
    (raw / "a.txt").write_text("a photo of anna")
    (raw / "sub" / "a.jpg").write_bytes(image_bytes("JPEG"))  # same stem in a sub-folder: renamed
    (raw / "sub" / "b.png").write_bytes(image_bytes())
    (raw / "sub" / "metadata.jsonl").write_text('{"file_name": "b.png", "text": "anna, from the metadata"}\n'
                                                '{"file_name": "a.jpg", "text": "anna in the sub-folder"}\n')
    (raw / "old.bmp").write_bytes(image_bytes("BMP"))  # a type browsers and datasets take, the trainer not: a JPEG
    (raw / "anim.gif").write_bytes(image_bytes("GIF"))  # not a type datasets take
    (raw / "clips").mkdir()
    (raw / "clips" / "dog.mp4").write_bytes(video_bytes([1, 2]))  # its two sharpest frames, with its caption
    (raw / "clips" / "dog.txt").write_text("a dog running")
    (raw / "phone.mov").write_bytes(video_bytes([3]))  # phone.HEIC's Live Photo motion: left out
    (raw / "bad.mp4").write_bytes(b"not a video at all" * 50)
    (raw / "phone.HEIC").write_bytes(heic_photo())  # a phone's photo: a JPEG, upright, for the trainer
    (raw / "broken.png").write_bytes(b"\x89PNG not really")
    (raw / "notes.md").write_text("hello")
    (raw / "dataset.json").write_text('{"trigger_word": "annaxyz"}')
    prepared = prepare_images(raw, tmp_path / "out", max_pixels=10_000_000)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert prepared.images == 7 and "old.jpg" in names and "anim.gif" not in names
    assert (tmp_path / "out" / "clips_dog-00m02.7s.txt").read_text() == "a dog running"
    assert "clips_dog-00m00.7s.jpg" in names and not any(n.startswith("phone-") for n in names)
    with Image.open(tmp_path / "out" / "phone.jpg") as phone:
        assert phone.format == "JPEG" and phone.size == (64, 96)
    assert "a.png" in names and "a.txt" in names and "sub_a.jpg" in names
    assert (tmp_path / "out" / "a.txt").read_text() == "a photo of anna"
    assert (tmp_path / "out" / "sub_a.txt").read_text() == "anna in the sub-folder"  # its folder's metadata
    assert (tmp_path / "out" / "sub_b.txt").read_text() == "anna, from the metadata"
    reasons = {s["file"]: s["reason"] for s in prepared.skipped}
    assert set(reasons) >= {"broken.png", "notes.md", "anim.gif", "phone.mov", "bad.mp4"}
    assert "Live Photo" in reasons["phone.mov"] and "damaged or not a video" in reasons["bad.mp4"]
    assert '"trigger_word": "annaxyz"' in (tmp_path / "out" / "dataset.json").read_text()


def test_several_datasets_and_a_lora_to_start_from_are_read_from_the_input(worker_env):
    from serverless.handler import parse_input
    from studio.settings import load_settings

    data = {"job_config": GOOD_CONFIG, "datasets": [{"prefix": "sets/close", "repeats": 3}, {"url": "https://h/w.zip"}],
            "start_lora": {"bucket": "old-runs", "key": "runs/job-7/anna v1.safetensors"}}
    _recipe, config, sources, start, _prefix = parse_input(data, load_settings())
    assert sources == [({"bucket": None, "prefix": "sets/close/"}, 3), ({"url": "https://h/w.zip"}, 1)]
    assert start == {"bucket": "old-runs", "key": "runs/job-7/anna v1.safetensors"}
    assert config.init_lora == "anna-v1"  # the job's name for it, as the form's field would hold
    data = {"job_config": GOOD_CONFIG, "dataset": {"prefix": "a"},
            "start_lora": {"url": "https://cdn.example/loras/Cat%20LoRA.safetensors?sig=1"}}
    assert parse_input(data, load_settings())[1].init_lora == "Cat-LoRA"


def test_a_start_lora_of_another_rank_fails_before_the_datasets_download(worker_env, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    moto = MotoS3().start()
    try:
        lora = tmp_path / "r8.safetensors"
        save_file({"diffusion_model.layers.0.attention.to_q.lora_A.weight": np.zeros((8, 4), np.float32),
                   "diffusion_model.layers.0.attention.to_q.lora_B.weight": np.zeros((4, 8), np.float32)}, str(lora))
        moto.make_bucket("worker-start", {"loras/r8.safetensors": lora.read_bytes()})
        for key, value in moto.env(S3_BUCKET="worker-start").items():
            worker_env.setenv(key, value)
        job = {"job_config": {**GOOD_CONFIG, "rank": 4}, "dataset": {"prefix": "never/fetched"}}
        result = handler({"id": "x", "input": {**job, "start_lora": {"key": "loras/r8.safetensors"}}})
        assert result["error"] == "r8 has rank 8, not 4: set the LoRA rank to 8 to start from it."
        missing = handler({"id": "y", "input": {**job, "start_lora": {"key": "loras/gone.safetensors"}}})
        assert missing["error"].startswith("The LoRA to start from (worker-start/loras/gone.safetensors) could not "
                                           "be downloaded: Nothing was found")
    finally:
        moto.stop()


def test_dataset_spec_rules():
    assert parse_dataset_spec({"prefix": "/sets/a"}) == {"bucket": None, "prefix": "sets/a/"}
    with pytest.raises(DatasetInputError):
        parse_dataset_spec({"prefix": "../up"})
    with pytest.raises(DatasetInputError):
        parse_dataset_spec({"url": "ftp://host/x.zip"})


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        return None


@pytest.fixture
def file_server(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_zip_dataset(file_server, make_settings, tmp_path):
    folder, base = file_server
    with zipfile.ZipFile(folder / "ds.zip", "w") as zf:
        zf.writestr("set/one.png", image_bytes())
        zf.writestr("set/one.txt", "one")
        zf.writestr("set/two:three.png", image_bytes())  # a name the importer cleans: its caption still pairs
        zf.writestr("set/metadata.csv", "file_name,text\ntwo:three.png,two\n")
        zf.writestr("../escape.png", image_bytes())
        zf.writestr("__MACOSX/set/._one.png", b"junk")
        zf.writestr("set/clip.mp4", video_bytes([4]))  # a video in the ZIP: its sharpest frame
    (folder / "not-a-zip.zip").write_text("<html>")
    with pytest.raises(DatasetInputError, match="The dataset link: 127.0.0.1 is a private or local address"):
        fetch_dataset({"url": f"{base}/ds.zip"}, make_settings(), tmp_path / "w0" / "raw")  # the pod's rule
    settings = make_settings(ALLOW_PRIVATE_URLS=1)  # the test's server is local
    updates = []
    fetch_dataset({"url": f"{base}/ds.zip"}, settings, tmp_path / "work" / "raw", updates.append)
    prepared = prepare_images(tmp_path / "work" / "raw", tmp_path / "work" / "ds", settings.max_image_pixels)
    assert prepared.images == 3 and prepared.captions == 2
    assert (tmp_path / "work" / "ds" / "set_clip-00m00.7s.jpg").is_file()
    assert not (tmp_path / "work" / "escape.png").exists()
    assert updates and updates[-1]["phase"] == "downloading"
    with pytest.raises(DatasetInputError, match="ZIP"):
        fetch_dataset({"url": f"{base}/not-a-zip.zip"}, settings, tmp_path / "w2" / "raw")
    with pytest.raises(DatasetInputError, match="404"):
        fetch_dataset({"url": f"{base}/missing.zip"}, settings, tmp_path / "w3" / "raw")



def test_a_parquet_file_at_a_url_or_in_a_prefix_is_unpacked_row_by_row(file_server, make_settings, tmp_path,
                                                                      monkeypatch):
    folder, base = file_server
    table = parquet_bytes([{"image": (image_bytes(), "one.png"), "text": "anna at the door"},
                           {"image": (image_bytes(size=(48, 32)), None), "text": "anna in the rain"}],
                          features=HF_FEATURES)
    (folder / "train.parquet").write_bytes(table)
    settings = make_settings(ALLOW_PRIVATE_URLS=1)
    fetch_dataset({"url": f"{base}/train.parquet"}, settings, tmp_path / "url" / "raw")
    prepared = prepare_images(tmp_path / "url" / "raw", tmp_path / "url" / "ds", settings.max_image_pixels)
    assert prepared.images == 2 and {p.name: p.read_text() for p in (tmp_path / "url" / "ds").glob("*.txt")} == {
        "one.txt": "anna at the door", "dataset-000001.txt": "anna in the rain"}
    moto = MotoS3().start()
    try:
        moto.make_bucket("sets", {"anna/train.parquet": table, "anna/more.zip": _zip({"two.png": image_bytes()}),
                                  "anna/three.png": image_bytes()})
        for key, value in moto.env(S3_BUCKET="sets").items():
            monkeypatch.setenv(key, value)
        from studio.settings import load_settings

        fetch_dataset({"prefix": "anna"}, load_settings(), tmp_path / "s3" / "raw")
        prepared = prepare_images(tmp_path / "s3" / "raw", tmp_path / "s3" / "ds", settings.max_image_pixels)
        assert prepared.images == 4 and prepared.skipped == []  # the ZIP and the table unpacked where they lay
    finally:
        moto.stop()
    (folder / "packed.zip").write_bytes(_zip({"set/data/train.parquet": table, "set/b.png": image_bytes()}))
    fetch_dataset({"url": f"{base}/packed.zip"}, settings, tmp_path / "zip" / "raw")  # a table inside a ZIP
    prepared = prepare_images(tmp_path / "zip" / "raw", tmp_path / "zip" / "ds", settings.max_image_pixels)
    assert prepared.images == 3 and {p.name: p.read_text() for p in (tmp_path / "zip" / "ds").glob("*.txt")} == {
        "set_data_train_one.txt": "anna at the door", "set_data_train_train-000001.txt": "anna in the rain"}
    (folder / "broken.parquet").write_bytes(b"PAR1" + b"\1" * 100)
    with pytest.raises(DatasetInputError, match="is damaged or not a Parquet file"):
        fetch_dataset({"url": f"{base}/broken.parquet"}, settings, tmp_path / "bad" / "raw")


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_url_zip_bomb_is_stopped_while_unpacking(file_server, make_settings, tmp_path):
    folder, base = file_server
    with zipfile.ZipFile(folder / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/big.png", b"\0" * (24 << 20))  # about 1000:1, far over ZIP_MAX_RATIO
    with pytest.raises(DatasetInputError, match="ZIP bomb"):
        fetch_dataset({"url": f"{base}/bomb.zip"}, make_settings(ALLOW_PRIVATE_URLS=1), tmp_path / "work" / "raw")
    assert not list((tmp_path / "work").rglob("*.png"))  # the staging folder is gone too

def test_progress_reporter_throttles_but_keeps_phase_changes():
    sent = []
    report = ProgressReporter(sent.append, interval_s=3600)
    report({"phase": "training", "step": 1, "loss": 0.5, "eta_s": 10, "gpu_mem_gb": None})
    report({"phase": "training", "step": 2, "loss": 0.4})
    report({"phase": "saving", "step": 2})
    report({"phase": "done", "step": 2})
    assert [u["phase"] for u in sent] == ["training", "saving", "done"]
    assert sent[0] == {"phase": "training", "step": 1, "loss": 0.5, "eta_s": 10}


def test_a_hugging_face_dataset_is_a_dataset_too(hub, make_settings, tmp_path):  # noqa: F811
    settings = make_settings(HF_ENDPOINT=hub.url)
    link = "https://huggingface.co/datasets/me/portraits"
    updates = []
    fetch_dataset(parse_dataset_spec({"url": link}), settings, tmp_path / "work" / "raw", updates.append)
    prepared = prepare_images(tmp_path / "work" / "raw", tmp_path / "work" / "ds", settings.max_image_pixels)
    captions = {p.name: p.read_text() for p in (tmp_path / "work" / "ds").glob("*.txt")}
    assert prepared.images == 5 and captions == {
        "extra_001.txt": "tok, a man in a hat", "extra_003.txt": "tok, a dog",
        "train_001.txt": "tok, a woman in a red coat",
        "packs_more_more_a.txt": "tok, a child, smiling"}  # the repo's ZIP, unpacked where it lay
    assert updates[-1]["bytes_done"] == updates[-1]["bytes_total"]
    assert prepared.skipped == []  # README.md and the hub's bookkeeping are not the dataset's
    tables = tmp_path / "w2"
    fetch_dataset({"url": "https://huggingface.co/datasets/me/tables"}, settings, tables / "raw")
    prepared = prepare_images(tables / "raw", tables / "ds", settings.max_image_pixels)
    assert prepared.images == 3 and {p.name: p.read_text() for p in (tables / "ds").glob("*.txt")} == {
        "data_test-00000-of-00001_b.txt": "tok, a green door", "data_train-00000-of-00001_a.txt": "tok, a red door",
        "data_train-00000-of-00001_train-00000-of-00001-000001.txt": "tok, a blue door"}  # rows unpacked in place
    with pytest.raises(DatasetInputError, match="Link the dataset itself"):
        parse_dataset_spec({"url": "https://huggingface.co/datasets/me/portraits/discussions"})
