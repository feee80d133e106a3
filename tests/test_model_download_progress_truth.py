"""The download banner tells the truth: files already on disk that only needed a hash check are no download speed
(no "12 GB/s, ETA <1 min" after a restart), a download that gets no data says it is stalled instead of showing a
speed that slowly fades, and the bytes shown never run backwards."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import time

from studio import fetch, fetch_progress, hub_files
from studio.model_status import describe, download_state
from studio.workspace import Workspace
from tests.test_fetch import FAST, _payload, hub, models_file  # noqa: F401 - the stand-in hub, fixtures


def _record_updates(monkeypatch) -> list[dict]:
    """Every model entry as the status file gets it."""
    seen = []
    real = fetch_progress.StatusFile.update

    def update(self, key, force=False, **fields):
        real(self, key, force=force, **fields)
        seen.append(dict(self.models[key]))

    monkeypatch.setattr(fetch_progress.StatusFile, "update", update)
    return seen


def test_files_checked_on_disk_do_not_count_as_download_speed(make_settings, hub, models_file, monkeypatch):
    settings = make_settings(HF_ENDPOINT=hub.url)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    for folder in Workspace(settings.root).models.iterdir():  # the files stay, their record is lost
        (folder / fetch.MANIFEST_NAME).unlink()
    real_hash_ok = hub_files._file_hash_ok

    def slow_hash_ok(path, remote):  # a 12 GB file takes a while to hash
        time.sleep(0.2)
        return real_hash_ok(path, remote)

    monkeypatch.setattr(hub_files, "_file_hash_ok", slow_hash_ok)
    seen = _record_updates(monkeypatch)
    hub.requests.clear()
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    assert hub.file_requests("GET") == []  # nothing downloaded
    speeds = [entry["speed_bps"] for entry in seen if entry["speed_bps"]]
    assert speeds == [], f"a hash check on disk was shown as download speed: {speeds[:5]}"


def test_a_download_that_gets_no_data_says_it_is_stalled(make_settings, hub, models_file, monkeypatch):
    hub.repos["org/caption-GGUF"]["model-Q8_0.gguf"] = _payload(200_000, 8)  # four 64 KB chunks
    hub.slow[("org/caption-GGUF", "model-Q8_0.gguf")] = 0.8  # each one after a long silence
    monkeypatch.setattr(fetch_progress, "STALL_AFTER_S", 0.3)
    settings = make_settings(HF_ENDPOINT=hub.url)
    seen = _record_updates(monkeypatch)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    stalled = [entry for entry in seen if entry["key"] == "caption" and entry.get("stalled_s")]
    assert stalled, "no update said the download was stalled"
    assert all(entry["speed_bps"] == 0 and entry["eta_s"] is None for entry in stalled)
    assert "no data for" in describe(stalled[-1]) and "%" in describe(stalled[-1])
    assert [entry for entry in seen if entry["state"] == "ready" and entry.get("stalled_s")] == []


def test_a_stalled_download_reads_as_such_in_the_tools(settings):
    from studio.atomic import atomic_write_json

    atomic_write_json(Workspace(settings.root).model_status_file, {
        "state": "downloading", "demo": False, "pid": None, "updated_at": time.time(),
        "models": [{"key": "zimage", "name": "Z-Image-Turbo", "state": "downloading", "percent": 40.0,
                    "speed_bps": 0, "eta_s": None, "stalled_s": 75, "bytes_done": 4, "bytes_total": 10}]})
    message = download_state(settings, "zimage")["message"]
    assert message == "downloading, 40%, stalled (no data for 1 min)"


def test_bytes_shown_never_run_backwards(make_settings, hub, models_file, monkeypatch):
    hub.repos["org/caption-GGUF"]["model-Q8_0.gguf"] = _payload(3_000_000, 9)
    hub.slow[("org/caption-GGUF", "model-Q8_0.gguf")] = 0.01
    hub.drop_once[("org/caption-GGUF", "model-Q8_0.gguf")] = 1_000_000  # a dropped connection, resumed
    settings = make_settings(HF_ENDPOINT=hub.url)
    seen = _record_updates(monkeypatch)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.02) == 0
    for key in ("caption", "zimage"):
        done = [entry["bytes_done"] for entry in seen if entry["key"] == key]
        assert done == sorted(done), key
        assert all(entry["percent"] <= 100 for entry in seen)
