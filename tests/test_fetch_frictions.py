"""The first minutes of a pod: the model fetcher when the disk fills up, when HF_TOKEN is set but wrong, and when
models.txt holds the mistakes people make by hand."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import errno
import json

import pytest

from studio import fetch, fetch_progress, hub_files
from studio.atomic import read_json
from studio.fetch_progress import StatusFile
from studio.models_txt import ModelsFileError, load_models_txt, parse_models_txt
from studio.workspace import Workspace
from tests.test_fetch import FAST, _payload, _ranges, hub, models_file  # noqa: F401 - the stand-in hub, fixtures

CAPTION_FILE = ("org/caption-GGUF", "model-Q8_0.gguf")


def _status(settings) -> dict:
    return read_json(Workspace(settings.root).model_status_file)


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def test_a_disk_that_fills_up_mid_download_says_so_and_the_download_continues_later(make_settings, hub, models_file,
                                                                                     monkeypatch):
    hub.repos[CAPTION_FILE[0]][CAPTION_FILE[1]] = _payload(1_500_000, 11)
    settings = make_settings(HF_ENDPOINT=hub.url)
    real_get = hub_files._ranged_get
    calls = []

    def fill_the_disk(url, headers, part, expected, meter, label):
        calls.append(label)
        if label.endswith(CAPTION_FILE[1]):  # half the file lands, then the volume is full
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(_payload(1_500_000, 11)[:700_000])
            raise _disk_full()
        return real_get(url, headers, part, expected, meter, label)

    monkeypatch.setattr(hub_files, "_ranged_get", fill_the_disk)
    code = fetch.run(settings, models_file, policy=FAST, progress_interval=0.05)
    assert code == 0  # retrying at once cannot free space: no restart loop
    caption = _status(settings)["models"][0]
    assert caption["state"] == "error" and not caption["retrying"]
    assert "The disk filled up while downloading caption-GGUF" in caption["error"]
    assert "could not be reached" not in caption["error"] and "network" not in caption["error"]
    assert len([c for c in calls if c.endswith(CAPTION_FILE[1])]) == 1  # not retried five times
    folder = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF"
    [partial] = (folder / ".cache" / "huggingface" / "download").glob("model-Q8_0*.incomplete")
    assert partial.stat().st_size == 700_000  # kept for the next start
    assert not (folder / "model-Q8_0.gguf").exists()

    monkeypatch.setattr(hub_files, "_ranged_get", real_get)  # space freed, the fetcher started again
    hub.requests.clear()
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    assert _ranges(hub, CAPTION_FILE[1]) == [700_000]  # continued, not from zero
    assert (folder / "model-Q8_0.gguf").read_bytes() == _payload(1_500_000, 11)
    assert _status(settings)["state"] == "ready"


def test_a_full_disk_while_recording_a_file_is_reported_not_a_crash(make_settings, hub, models_file, monkeypatch):
    settings = make_settings(HF_ENDPOINT=hub.url)

    def no_room(self, remote):
        raise _disk_full()

    monkeypatch.setattr(fetch.Manifest, "record", no_room)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    errors = [m["error"] for m in _status(settings)["models"]]
    assert all(e and e.startswith("The disk filled up while downloading") for e in errors), errors


def test_the_status_file_is_written_in_place_when_the_disk_is_full(settings, monkeypatch, caplog):
    path = Workspace(settings.root).model_status_file
    specs = parse_models_txt("org/caption-GGUF main a.gguf Qwen2.5-VL-7B-Instruct-GGUF\n")
    status = StatusFile(path, specs, demo=False, interval=0)
    status.write()
    assert _status(settings)["models"][0]["state"] == "pending"

    def no_room(*args, **kwargs):
        raise _disk_full()

    monkeypatch.setattr(fetch_progress, "atomic_write_json", no_room)  # no room for a temp file beside it
    status.update("caption", force=True, state="error", error="The disk filled up while downloading caption-GGUF")
    on_disk = json.loads(path.read_text("utf-8"))
    assert on_disk["state"] == "error" and on_disk["models"][0]["error"].startswith("The disk filled up")

    path.unlink()  # nothing to overwrite either: the downloads go on, one warning in the log
    for _ in range(3):
        status.update("caption", force=True, bytes_done=10)
    assert len([r for r in caplog.records if "could not write the download status" in r.getMessage()]) == 1


def test_the_progress_meter_survives_a_status_file_it_cannot_write(settings, tmp_path, monkeypatch):
    path = Workspace(settings.root).model_status_file
    specs = parse_models_txt("org/caption-GGUF main a.gguf Qwen2.5-VL-7B-Instruct-GGUF\n")
    status = StatusFile(path, specs, demo=False, interval=0)
    writes = []

    def no_room(*args, **kwargs):
        writes.append(1)
        raise _disk_full()

    monkeypatch.setattr(fetch_progress, "atomic_write_json", no_room)
    meter = fetch_progress.ProgressMeter(status, "caption", tmp_path, interval=0.01)
    meter.start()
    try:
        for _ in range(500):
            if len(writes) >= 3:
                break
            meter.stopped.wait(0.01)
    finally:
        meter.stop()
    assert len(writes) >= 3  # it went on sampling after the first failed write


@pytest.mark.parametrize("line, token, said, not_said", [
    ("org/private main a.bin private-one", "hf_wrong", "the account of HF_TOKEN cannot read it", "HF_TOKEN is missing"),
    ("org/private main a.bin private-one", None, "HF_TOKEN is missing", "account of HF_TOKEN"),
    ("org/gated main a.bin gated-one", "hf_wrong", "the account of HF_TOKEN has no access", "set HF_TOKEN"),
    ("org/gated main a.bin gated-one", None, "set HF_TOKEN", "account of HF_TOKEN"),
])
def test_access_errors_say_what_to_fix_whether_or_not_a_token_is_set(make_settings, hub, tmp_path, line, token,
                                                                     said, not_said):
    hub.add("org/private", {"a.bin": b"secret"}, lfs=("a.bin",))
    hub.tokens["org/private"] = "hf_right"
    hub.add("org/gated", {"a.bin": b"terms"}, lfs=("a.bin",))
    hub.gated.add("org/gated")
    models = tmp_path / "m.txt"
    models.write_text(line + "\n")
    settings = make_settings(HF_ENDPOINT=hub.url, **({"HF_TOKEN": token} if token else {}))
    assert fetch.run(settings, models, policy=FAST, progress_interval=0.05) == 0
    error = _status(settings)["models"][0]["error"]
    assert said in error and not_said not in error and "models.txt line 1" in error
    assert "hf_wrong" not in json.dumps(_status(settings))  # the token is never written anywhere


def test_an_invalid_token_is_named_as_the_cause():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(401, json={"error": "Invalid credentials in Authorization header"},
                               request=httpx2.Request("GET", "https://hub.test/api/models/org/x/revision/main"))
    error = hub_files.hub_error(HfHubHTTPError("401", response=response), "org/x", "main", "models.txt line 2",
                                token_set=True)
    assert error.permanent
    assert str(error).startswith("The hub refused HF_TOKEN while asking for org/x: the token is invalid or expired")
    assert "models.txt line 2" in str(error)
    # without a token the sentence stays as it was (the dataset manager's hub import uses it too)
    assert "check HF_TOKEN" in str(hub_files.hub_error(HfHubHTTPError("401", response=response), "org/x", "main"))


def test_a_byte_order_mark_and_spaces_after_commas_are_not_mistakes(tmp_path):
    path = tmp_path / "models.txt"
    path.write_bytes("\ufefforg/caption-GGUF main model-Q8_0.gguf, mmproj-f16.gguf Qwen2.5-VL-7B-Instruct-GGUF\n"
                     "org/Image-Turbo  main  model_index.json ,transformer/*  Z-Image-Turbo\r\n".encode("utf-8"))
    first, second = load_models_txt(path)
    assert first.repo == "org/caption-GGUF" and first.patterns == ("model-Q8_0.gguf", "mmproj-f16.gguf")
    assert second.patterns == ("model_index.json", "transformer/*") and second.target == "Z-Image-Turbo"


def test_a_pasted_hub_link_gets_the_repo_name_to_write_instead():
    with pytest.raises(ModelsFileError) as caught:
        parse_models_txt("https://huggingface.co/Tongyi-MAI/Z-Image-Turbo/tree/main main a.json Z-Image-Turbo\n")
    assert "line 1" in str(caught.value) and "write 'Tongyi-MAI/Z-Image-Turbo'" in str(caught.value)


def test_a_refused_token_does_not_stop_a_public_model(make_settings, hub, tmp_path):
    """The hub answers 401 to any request carrying a token it does not know, public repos included: a mistyped
    HF_TOKEN would otherwise leave the pod without its models."""
    hub.add("org/public", {"a.bin": b"open to all"}, lfs=("a.bin",))
    hub.add("org/private", {"b.bin": b"secret"}, lfs=("b.bin",))
    hub.tokens["org/private"] = "hf_right"
    hub.refused_tokens.add("hf_typo")
    models = tmp_path / "m.txt"
    models.write_text("org/public main a.bin public-one\norg/private main b.bin private-one\n")
    settings = make_settings(HF_ENDPOINT=hub.url, HF_TOKEN="hf_typo")
    assert fetch.run(settings, models, policy=FAST, progress_interval=0.05) == 0
    public, private = _status(settings)["models"]
    assert public["state"] == "ready", public
    assert (Workspace(settings.root).models / "public-one" / "a.bin").read_bytes() == b"open to all"
    # the private one needs a token the hub knows: the sentence names the token, not the repo
    assert private["state"] == "error" and "the token is invalid or expired" in private["error"], private
    downloads = [r for r in hub.requests if "/resolve/" in r["path"] and "org/public" in r["path"]]
    assert downloads and all(r["auth"] is None for r in downloads)  # the refused token was not sent again
