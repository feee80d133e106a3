"""studio.s3 and trainer.s3_push against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from studio.s3 import Storage, StorageError, normalize_prefix, public_endpoint
from studio.s3_outputs import job_output_files
from tests.helpers import free_port
from tests.moto_s3 import MotoS3
from trainer.s3_push import push_job_outputs


@pytest.fixture(scope="module")
def moto():
    server = MotoS3().start()
    yield server
    server.stop()


def png_bytes(color=(200, 30, 30), size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def test_prefix_rules():
    assert normalize_prefix("/people/anna/") == "people/anna/"
    assert normalize_prefix("") == ""
    with pytest.raises(StorageError):
        normalize_prefix("a/../b")
    assert public_endpoint("https://key:secret@acct.r2.cloudflarestorage.com/") == \
        "https://acct.r2.cloudflarestorage.com/"


def test_download_prefix_keeps_folders_and_reports_progress(moto, make_settings, tmp_path):
    moto.make_bucket("import-src", {
        "sets/anna/001.png": png_bytes(),
        "sets/anna/001.txt": b"anna smiling",
        "sets/anna/more/002.png": png_bytes((0, 90, 200)),
        "sets/anna/folder-marker/": b"",
        "sets/bob/003.png": png_bytes(),
    })
    settings = make_settings(**moto.env(S3_BUCKET="import-src"))
    storage = Storage.from_settings(settings)
    storage.check()
    updates = []
    files = storage.download_prefix("sets/anna", tmp_path / "got", on_progress=updates.append)
    got = sorted(p.relative_to(tmp_path / "got").as_posix() for p in files)
    assert got == ["001.png", "001.txt", "more/002.png"]
    assert (tmp_path / "got" / "001.txt").read_text() == "anna smiling"
    assert updates[-1]["files_done"] == updates[-1]["files_total"] == 3
    assert updates[-1]["bytes_done"] == updates[-1]["bytes_total"] > 0


def test_download_prefix_respects_size_limit(moto, make_settings, tmp_path):
    moto.make_bucket("import-big", {"big/a.bin": b"x" * 5000})
    storage = Storage.from_settings(make_settings(**moto.env(S3_BUCKET="import-big")))
    with pytest.raises(StorageError) as caught:
        storage.download_prefix("big/", tmp_path / "x", max_bytes=1000)
    assert caught.value.code == "too_large"


def _fake_job(job_dir):
    (job_dir / "lora").mkdir(parents=True)
    (job_dir / "lora" / "anna-v1.safetensors").write_bytes(b"lora-bytes")
    (job_dir / "samples" / "step_000010").mkdir(parents=True)
    (job_dir / "samples" / "step_000010" / "0.png").write_bytes(png_bytes())
    (job_dir / "samples" / "step_000010" / "prompts.json").write_text("[]")
    (job_dir / "checkpoints" / "step_000010").mkdir(parents=True)
    (job_dir / "checkpoints" / "step_000010" / "state.pt").write_bytes(b"optimizer")
    (job_dir / "config.json").write_text("{}")
    (job_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    (job_dir / "log.txt").write_text("log")


def test_push_job_outputs_uploads_lora_samples_and_config(moto, make_settings, tmp_path):
    moto.make_bucket("outputs")
    job_dir = tmp_path / "job"
    _fake_job(job_dir)
    settings = make_settings(**moto.env(S3_BUCKET="outputs", S3_OUTPUT_PREFIX="studio/loras"))
    result = push_job_outputs(settings, job_dir, "anna-v1")
    prefix = "studio/loras/anna-v1/"
    assert result["lora_key"] == prefix + "anna-v1.safetensors"
    assert moto.keys("outputs") == sorted([
        prefix + "anna-v1.safetensors", prefix + "config.json", prefix + "metrics.jsonl",
        prefix + "samples/step_000010/0.png", prefix + "samples/step_000010/prompts.json"])
    body = moto.client().get_object(Bucket="outputs", Key=result["lora_key"])["Body"].read()
    assert body == b"lora-bytes"


def test_push_job_outputs_is_off_without_prefix(make_settings, tmp_path):
    _fake_job(tmp_path / "job")
    assert push_job_outputs(make_settings(), tmp_path / "job", "anna-v1") is None
    with pytest.raises(StorageError) as caught:  # a prefix without keys is a configuration mistake
        push_job_outputs(make_settings(S3_OUTPUT_PREFIX="x"), tmp_path / "job", "anna-v1")
    assert caught.value.code == "not_configured"


def test_job_output_files_leave_checkpoints_local(tmp_path):
    _fake_job(tmp_path / "job")
    relative = [rel for _, rel in job_output_files(tmp_path / "job")]
    assert "anna-v1.safetensors" in relative
    assert not any("checkpoints" in rel or rel == "log.txt" for rel in relative)


def test_upload_folder(moto, make_settings, tmp_path):
    moto.make_bucket("folders")
    (tmp_path / "ds" / "sub").mkdir(parents=True)
    (tmp_path / "ds" / "a.png").write_bytes(png_bytes())
    (tmp_path / "ds" / "a.txt").write_text("caption")
    (tmp_path / "ds" / "sub" / "b.txt").write_text("b")
    (tmp_path / "ds" / ".hidden").write_text("no")
    storage = Storage.from_settings(make_settings(**moto.env(S3_BUCKET="folders")))
    updates = []
    keys = storage.upload_folder(tmp_path / "ds", "exports/ds1", on_progress=updates.append)
    assert sorted(keys) == ["exports/ds1/a.png", "exports/ds1/a.txt", "exports/ds1/sub/b.txt"]
    assert moto.keys("folders") == sorted(keys)
    assert updates[-1]["files_done"] == 3


def test_wrong_credentials_give_clear_errors_without_secrets(moto, make_settings, caplog):
    moto.make_bucket("guarded", {"a.txt": b"a"})
    caplog.set_level(logging.INFO)
    wrong_secret = "WrongSecretKey0000000000000000000000000000"
    with moto.checking_credentials():
        # the right keys pass while moto checks signatures: the failures below are real rejections
        Storage.from_settings(make_settings(**moto.env(S3_BUCKET="guarded"))).check()

        settings = make_settings(**moto.env(S3_BUCKET="guarded", S3_SECRET_ACCESS_KEY=wrong_secret))
        with pytest.raises(StorageError) as caught:
            Storage.from_settings(settings, max_attempts=1).check()
        assert caught.value.code == "bad_credentials"
        assert "S3_SECRET_ACCESS_KEY" in str(caught.value)

        unknown_key = "AKIAUNKNOWN000000000"
        settings = make_settings(**moto.env(S3_BUCKET="guarded", S3_ACCESS_KEY_ID=unknown_key))
        with pytest.raises(StorageError) as unknown:
            Storage.from_settings(settings, max_attempts=1).list_objects("")
        assert unknown.value.code == "bad_credentials"
        assert "S3_ACCESS_KEY_ID" in str(unknown.value)
    for text in (str(caught.value), str(unknown.value), caplog.text):
        for secret in (wrong_secret, unknown_key, moto.secret_key, moto.access_key):
            assert secret not in text


def test_secret_never_logged_even_at_debug(moto, make_settings, caplog):
    caplog.set_level(logging.DEBUG)
    wrong_secret = "AnotherWrongSecret00000000000000000000000"
    with moto.checking_credentials():
        settings = make_settings(**moto.env(S3_BUCKET="guarded-2", S3_SECRET_ACCESS_KEY=wrong_secret))
        with pytest.raises(StorageError):
            Storage.from_settings(settings, max_attempts=1).check()
    assert caplog.text  # botocore logged its requests
    assert wrong_secret not in caplog.text
    assert moto.secret_key not in caplog.text
    assert "S3_SECRET" not in repr(settings)


def test_missing_bucket_is_named(moto, make_settings, tmp_path):
    storage = Storage.from_settings(make_settings(**moto.env(S3_BUCKET="no-such-bucket")), max_attempts=1)
    with pytest.raises(StorageError) as caught:
        storage.check()
    assert caught.value.code == "no_such_bucket"
    assert "'no-such-bucket' does not exist" in str(caught.value)
    with pytest.raises(StorageError) as listing:
        storage.download_prefix("x/", tmp_path / "never")
    assert listing.value.code == "no_such_bucket"


def test_unreachable_endpoint(make_settings):
    dead = f"http://user:pw@127.0.0.1:{free_port()}"
    settings = make_settings(S3_ENDPOINT_URL=dead, S3_BUCKET="b-x", S3_ACCESS_KEY_ID="AKIAX",
                             S3_SECRET_ACCESS_KEY="secretvalue")
    with pytest.raises(StorageError) as caught:
        Storage.from_settings(settings, max_attempts=1).check()
    assert caught.value.code == "unreachable"
    assert f"127.0.0.1:{dead.rsplit(':', 1)[1]}" in str(caught.value)
    assert "pw" not in str(caught.value) and "secretvalue" not in str(caught.value)


def test_missing_keys_are_a_configuration_error(make_settings):
    with pytest.raises(StorageError) as caught:
        Storage.from_settings(make_settings(S3_BUCKET="b-x"))
    assert caught.value.code == "not_configured"
    with pytest.raises(StorageError):
        Storage.from_settings(make_settings(S3_ACCESS_KEY_ID="a", S3_SECRET_ACCESS_KEY="b"))
    with pytest.raises(StorageError, match="S3_ENDPOINT_URL"):
        Storage.from_settings(make_settings(S3_ENDPOINT_URL="not a url", S3_BUCKET="b-x", S3_ACCESS_KEY_ID="a",
                                            S3_SECRET_ACCESS_KEY="b"))


def test_r2_names_are_accepted(moto, make_settings):
    moto.make_bucket("r2-style", {"x/1.txt": b"1"})
    settings = make_settings(R2_ENDPOINT_URL=moto.endpoint, R2_BUCKET="r2-style", R2_ACCESS_KEY_ID=moto.access_key,
                             R2_SECRET_ACCESS_KEY=moto.secret_key)
    assert [o.key for o in Storage.from_settings(settings).list_objects("x")] == ["x/1.txt"]


def test_worker_pushes_a_finished_job_and_names_the_exact_prefix(moto, make_settings):
    from types import SimpleNamespace

    from trainer.worker import Worker

    moto.make_bucket("outputs")
    settings = make_settings(**moto.env(S3_BUCKET="outputs", S3_OUTPUT_PREFIX="studio/loras"))
    worker = Worker(settings, unload_caption=False)
    job = SimpleNamespace(id="job1", config={"name": "anna-v1"})
    _fake_job(worker.workspace.job_dir(job.id))
    note = worker._push_outputs(job)
    assert note == " Pushed to s3://outputs/studio/loras/anna-v1/."
    assert "studio/loras/anna-v1/anna-v1.safetensors" in moto.keys("outputs")
    assert moto.secret_key not in note
