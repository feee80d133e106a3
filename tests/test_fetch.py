"""The model fetcher against a local server that speaks the hub's download protocol (HF_ENDPOINT)."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path

import pytest

from studio import fetch
from studio.atomic import read_json
from studio.model_status import banners, download_state
from studio.workspace import Workspace
from tests.fake_hub import FakeHub


def _payload(size: int, seed: int) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets HF_HUB_OFFLINE=1 for everything else
    with FakeHub() as server:
        server.add("org/caption-GGUF", {"model-Q8_0.gguf": _payload(600_000, 1),
                                        "mmproj-f16.gguf": _payload(200_000, 2), "README.md": b"# readme\n"},
                   lfs=("model-Q8_0.gguf", "mmproj-f16.gguf"))
        server.add("org/Image-Turbo", {"model_index.json": b'{"_class_name": "ZImagePipeline"}\n',
                                       "transformer/config.json": b"{}\n",
                                       "transformer/diffusion_pytorch_model.safetensors": _payload(300_000, 3),
                                       "vae/config.json": b'{"a": 1}\n', "assets/big.png": _payload(90_000, 4)},
                   lfs=("transformer/diffusion_pytorch_model.safetensors", "assets/big.png"))
        yield server


@pytest.fixture
def models_file(tmp_path):
    path = tmp_path / "models.txt"
    path.write_text("# test models\n"
                    "org/caption-GGUF main model-Q8_0.gguf,mmproj-f16.gguf Qwen2.5-VL-7B-Instruct-GGUF\n"
                    "\n"
                    "org/Image-Turbo main model_index.json,transformer/*,vae/* Z-Image-Turbo\n")
    return path


FAST = fetch.RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1)


def _run(make_settings, hub, models_file, **kwargs):
    settings = make_settings(HF_ENDPOINT=hub.url, **kwargs.pop("env", {}))
    code = fetch.run(settings, models_file, policy=FAST, progress_interval=0.05, **kwargs)
    return settings, code


def test_fetch_downloads_verifies_and_reports_ready(make_settings, hub, models_file):
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0
    models = Workspace(settings.root).models
    assert (models / "Qwen2.5-VL-7B-Instruct-GGUF" / "model-Q8_0.gguf").read_bytes() == _payload(600_000, 1)
    assert (models / "Z-Image-Turbo" / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_size == 300_000
    assert (models / "Z-Image-Turbo" / "vae" / "config.json").read_bytes() == b'{"a": 1}\n'
    assert not (models / "Z-Image-Turbo" / "assets").exists()  # not selected by the patterns
    assert not (models / "Qwen2.5-VL-7B-Instruct-GGUF" / "README.md").exists()
    status = read_json(Workspace(settings.root).model_status_file)
    assert status["state"] == "ready" and status["demo"] is False
    by_key = {m["key"]: m for m in status["models"]}
    assert by_key["caption"]["bytes_total"] == 800_000 and by_key["caption"]["percent"] == 100.0
    assert by_key["zimage"]["files_total"] == 4 and by_key["zimage"]["state"] == "ready"
    assert banners(settings) == []
    assert download_state(settings, "zimage") is None  # ready: nothing to wait for
    assert all(r["auth"] is None for r in hub.requests)  # no token configured, none sent


def test_second_run_skips_complete_files_without_network(make_settings, hub, models_file):
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0
    hub.requests.clear()
    _, code = _run(make_settings, hub, models_file)
    assert code == 0 and hub.requests == []
    # --refresh asks the hub for the listing again but downloads nothing that is complete
    _, code = _run(make_settings, hub, models_file, refresh=True)
    assert code == 0
    assert hub.file_requests("GET") == [] and hub.file_requests("HEAD") == []
    assert len([r for r in hub.requests if r["path"].startswith("/api/models/")]) == 2


def _ranges(hub, name: str) -> list[int | None]:
    gets = [r for r in hub.file_requests("GET") if r["path"].endswith(name)]
    return [int(re.fullmatch(r"bytes=(\d+)-", r["range"]).group(1)) if r["range"] else None for r in gets]


def test_interrupted_download_resumes_with_a_range_request(make_settings, hub, models_file):
    big = _payload(3_000_000, 9)
    hub.repos["org/caption-GGUF"]["model-Q8_0.gguf"] = big
    hub.drop_once[("org/caption-GGUF", "model-Q8_0.gguf")] = 1_000_000  # the connection drops once, mid-file
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0
    ranges = _ranges(hub, "model-Q8_0.gguf")
    assert len(ranges) == 2 and ranges[0] is None
    assert 1_000_000 <= ranges[1] < 3_000_000  # continued where it stopped, not from zero
    target = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF" / "model-Q8_0.gguf"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(big).hexdigest()


def test_partial_download_survives_a_restart_of_the_fetcher(make_settings, hub, models_file):
    big = _payload(2_000_000, 5)
    hub.repos["org/caption-GGUF"]["model-Q8_0.gguf"] = big
    key = ("org/caption-GGUF", "model-Q8_0.gguf")
    hub.cut_every[key] = 600_000  # every response breaks off early,
    hub.dead_from[key] = 1_000_000  # and past 1 MB the link brings nothing: 3 attempts in a row without a byte
    settings, code = _run(make_settings, hub, models_file)
    assert code == fetch.EXIT_TEMPORARY  # supervisord starts the fetcher again
    first = _ranges(hub, "model-Q8_0.gguf")
    assert len(first) == 5 and first[0] is None and first[1] < first[2] == first[3] == first[4]
    folder = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF"
    [partial] = (folder / ".cache" / "huggingface" / "download").glob("*.incomplete")
    kept = partial.stat().st_size
    assert kept == first[2] < len(big)
    status = read_json(Workspace(settings.root).model_status_file)
    assert status["models"][0]["state"] == "error" and "continues from there" in status["models"][0]["error"]

    hub.requests.clear()
    hub.dead_from.clear()
    hub.cut_every[key] = 1_000_000
    _, code = _run(make_settings, hub, models_file)  # the restarted fetcher
    assert code == 0
    second = _ranges(hub, "model-Q8_0.gguf")
    assert second[0] == kept  # picked up the partial file left by the previous process
    assert (folder / "model-Q8_0.gguf").read_bytes() == big
    assert not partial.exists()


def test_a_connection_that_keeps_dropping_but_brings_bytes_each_time_finishes_the_file(make_settings, hub,
                                                                                      models_file):
    big = _payload(2_000_000, 6)
    hub.repos["org/caption-GGUF"]["model-Q8_0.gguf"] = big
    hub.cut_every[("org/caption-GGUF", "model-Q8_0.gguf")] = 600_000  # four drops, more than the 3 attempts
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0  # each attempt brought bytes: the count of failures in a row started again
    ranges = _ranges(hub, "model-Q8_0.gguf")
    assert len(ranges) == 4 and ranges[0] is None and ranges == [None, *sorted(ranges[1:])]
    target = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF" / "model-Q8_0.gguf"
    assert target.read_bytes() == big


def test_stale_partial_downloads_are_removed(make_settings, hub, models_file):
    settings = make_settings(HF_ENDPOINT=hub.url)
    model_dir = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF"
    download_dir = model_dir / ".cache" / "huggingface" / "download"
    download_dir.mkdir(parents=True)
    stale = download_dir / "abc123.deadbeef.0a1b2c3d.incomplete"  # left by a killed process
    stale.write_bytes(b"x" * 1000)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    assert not stale.exists()


def test_progress_is_written_while_downloading(make_settings, hub, models_file):
    # huggingface-hub writes 10 MB at a time: a 25 MB file sent in ~1 s shows two partial steps on disk.
    hub.repos["org/caption-GGUF"]["model-Q8_0.gguf"] = _payload(25_000_000, 7)
    hub.slow[("org/caption-GGUF", "model-Q8_0.gguf")] = 0.0025
    settings = make_settings(HF_ENDPOINT=hub.url)
    status_file = Workspace(settings.root).model_status_file
    snapshots, done = [], threading.Event()

    def watch():
        while not done.is_set():
            data = read_json(status_file)
            if data:
                snapshots.append(data)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code = fetch.run(settings, models_file, policy=FAST, progress_interval=0.05)
    finally:
        done.set()
        watcher.join()
    assert code == 0
    caption = [s["models"][0] for s in snapshots if s["models"][0]["state"] == "downloading"]
    partial = [m for m in caption if 0 < m["percent"] < 100 and m["speed_bps"]]
    assert partial, "no snapshot showed a partial download with a speed"
    assert any(m["eta_s"] is not None for m in partial)
    assert all(m["bytes_total"] == 25_200_000 for m in partial)


def test_banner_and_download_state_while_downloading(settings):
    from studio.atomic import atomic_write_json

    atomic_write_json(Workspace(settings.root).model_status_file, {
        "state": "downloading", "demo": False, "pid": os.getpid(), "updated_at": time.time(),
        "models": [
            {"key": "caption", "name": "Qwen2.5-VL-7B-Instruct-GGUF", "target": "Qwen2.5-VL-7B-Instruct-GGUF",
             "state": "ready", "percent": 100.0},
            {"key": "zimage", "name": "Z-Image-Turbo", "target": "Z-Image-Turbo", "state": "downloading",
             "percent": 63.2, "speed_bps": 1.2e9, "eta_s": 180, "bytes_done": 1, "bytes_total": 2},
            {"key": "adapter", "name": "zimage_turbo_training_adapter", "state": "pending", "percent": 0.0},
        ],
    })
    assert banners(settings) == [{
        "level": "info", "id": "models",
        "text": "Downloading models: Z-Image-Turbo 63% (1.2 GB/s, ETA 3 min), zimage_turbo_training_adapter waiting",
    }]
    assert download_state(settings, "zimage")["message"] == "downloading, 63% (ETA 3 min)"
    assert download_state(settings, "Z-Image-Turbo")["percent"] == 63.2
    assert download_state(settings, "adapter")["message"] == "waiting to download"
    assert download_state(settings, "nothing") is None
    assert download_state(settings, "caption") is None


def test_corrupt_file_on_disk_is_downloaded_again(make_settings, hub, models_file):
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0
    target = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF" / "mmproj-f16.gguf"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))  # same size, new mtime: the manifest no longer vouches for it
    hub.requests.clear()
    _, code = _run(make_settings, hub, models_file)
    assert code == 0
    assert target.read_bytes() == _payload(200_000, 2)
    assert [r["path"].rsplit("/", 1)[1] for r in hub.file_requests("GET")] == ["mmproj-f16.gguf"]


def test_hash_mismatch_from_the_server_is_an_error_in_the_status(make_settings, hub, models_file):
    hub.corrupt.add(("org/caption-GGUF", "mmproj-f16.gguf"))
    settings, code = _run(make_settings, hub, models_file)
    assert code == fetch.EXIT_TEMPORARY  # supervisord tries again later
    status = read_json(Workspace(settings.root).model_status_file)
    by_key = {m["key"]: m for m in status["models"]}
    assert by_key["caption"]["state"] == "error"
    assert "mmproj-f16.gguf failed verification (hash does not match the hub's)" in by_key["caption"]["error"]
    assert by_key["zimage"]["state"] == "ready"  # one failed model does not stop the others
    assert not (Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF" / "mmproj-f16.gguf").exists()
    [banner] = banners(settings)
    assert banner["level"] == "warn" and "mmproj-f16.gguf failed verification" in banner["text"]
    assert banner["text"].endswith("It retries by itself in a minute.")
    assert download_state(settings, "caption")["message"].startswith("download failed: ")


def test_missing_file_and_missing_repo_are_permanent_errors_naming_the_line(make_settings, hub, tmp_path):
    models_file = tmp_path / "models.txt"
    models_file.write_text("org/caption-GGUF main nope.gguf Qwen2.5-VL-7B-Instruct-GGUF\n"
                           "org/missing main a.bin elsewhere\n")
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0  # retrying cannot fix these: no restart loop
    by_key = {m["key"]: m for m in read_json(Workspace(settings.root).model_status_file)["models"]}
    assert by_key["caption"]["error"] == ("org/caption-GGUF at main has no file matching 'nope.gguf' "
                                          "(models.txt line 1).")
    assert "org/missing was not found on the hub" in by_key["elsewhere"]["error"]
    assert "(models.txt line 2)" in by_key["elsewhere"]["error"]
    [banner] = banners(settings)
    assert banner["level"] == "error" and banner["text"].startswith("Model download failed: org/caption-GGUF")
    assert "To try again, restart the pod or run `python -m studio.supervisor_env ctl start fetch`" in banner["text"]


def test_hf_token_is_sent(make_settings, hub, models_file):
    _, code = _run(make_settings, hub, models_file, env={"HF_TOKEN": "hf_secret"})
    assert code == 0
    assert hub.requests and all(r["auth"] == "Bearer hf_secret" for r in hub.requests)


def test_malformed_models_txt_is_reported_in_the_banner(make_settings, hub, tmp_path):
    models_file = tmp_path / "models.txt"
    models_file.write_text("# ok\norg/repo main\n")
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0
    [banner] = banners(settings)
    assert banner["level"] == "error" and "models.txt line 2: expected 4 columns" in banner["text"]


def test_demo_mode_builds_demo_models_and_reports_ready(demo_root, make_settings):
    settings = make_settings(STUDIO_DEMO="1")
    assert fetch.run(settings) == 0
    status = read_json(Workspace(settings.root).model_status_file)
    assert status["demo"] is True and status["state"] == "ready"
    assert {m["key"] for m in status["models"]} == {"caption", "zimage", "adapter"}
    assert banners(settings) == []
    from studio.registry import model_paths

    paths = model_paths(settings)
    assert paths.caption_model.is_file() and (paths.zimage_dir / "model_index.json").is_file()
    assert paths.training_adapter.is_file()


def test_module_entry_point_reports_bad_settings(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    result = subprocess.run([sys.executable, "-m", "studio.fetch"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "STUDIO_ROOT": str(tmp_path), "STUDIO_DEMO": "maybe"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: STUDIO_DEMO='maybe' is not a yes/no value: use 1 or 0."


def test_status_paths_stay_inside_the_models_folder(make_settings, hub, tmp_path):
    # A repo file name with '..' cannot come from a well-behaved hub, but the fetcher must not follow it.
    hub.add("org/evil", {"../../escape.bin": b"x"})
    models_file = tmp_path / "models.txt"
    models_file.write_text("org/evil main * evil\n")
    settings, code = _run(make_settings, hub, models_file)
    assert not (Path(settings.root).parent / "escape.bin").exists()
    entry = {m["key"]: m for m in read_json(Workspace(settings.root).model_status_file)["models"]}["evil"]
    assert entry["state"] == "error"


def test_not_enough_disk_space_is_a_permanent_error(make_settings, hub, models_file, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    settings, code = _run(make_settings, hub, models_file)
    assert code == 0
    entry = {m["key"]: m for m in read_json(Workspace(settings.root).model_status_file)["models"]}["caption"]
    assert entry["state"] == "error"
    assert entry["error"].startswith("Not enough disk space for caption-GGUF: it needs 800 KB more and ")
    assert entry["error"].endswith(" has 1.0 KB free; enlarge the volume or free space.")
    assert hub.file_requests("GET") == []


def test_progress_meter_counts_the_hubs_progress_callbacks(settings, tmp_path):
    from studio.models_txt import parse_models_txt

    [spec] = parse_models_txt("org/repo main a.bin folder\n")
    status = fetch.StatusFile(tmp_path / "status.json", [spec], demo=False)
    meter = fetch.ProgressMeter(status, spec.key, tmp_path, interval=0.05)
    bar = meter.progress_bar_class()(total=100, disable=True)  # bars are off in the fetcher; counting is not
    bar.update(40)
    bar.update(2)
    assert meter.current_file_bytes == 42
    meter.start_file()
    assert meter.current_file_bytes == 0


def test_download_banner_shows_on_the_pages(make_settings):
    from studio.atomic import atomic_write_json

    settings = make_settings(STUDIO_PASSWORD="pw")
    atomic_write_json(Workspace(settings.root).model_status_file, {
        "state": "downloading", "demo": False, "pid": os.getpid(), "updated_at": time.time(),
        "models": [{"key": "zimage", "name": "Z-Image-Turbo", "state": "downloading", "percent": 63.0,
                    "speed_bps": 1.2e9, "eta_s": 180}],
    })
    import app
    import trainer

    for module in (app, trainer):
        client = module.create_app(settings).test_client()
        page = client.get("/", headers={"Authorization": "Bearer pw"})
        assert page.status_code == 200
        assert "Downloading models: Z-Image-Turbo 63% (1.2 GB/s, ETA 3 min)" in page.get_data(as_text=True)


def test_large_files_come_from_the_cdn_without_the_token(make_settings, hub, models_file):
    hub.cdn = True
    settings, code = _run(make_settings, hub, models_file, env={"HF_TOKEN": "hf_secret"})
    assert code == 0
    cdn = [r for r in hub.requests if r["path"].startswith("/cdn/")]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in cdn) == [
        "diffusion_pytorch_model.safetensors", "mmproj-f16.gguf", "model-Q8_0.gguf"]
    assert all(r["auth"] is None for r in cdn)  # the signed address needs no token; it must not leak there
    assert all(r["auth"] == "Bearer hf_secret" for r in hub.requests if not r["path"].startswith("/cdn/"))
    model = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF" / "model-Q8_0.gguf"
    assert model.read_bytes() == _payload(600_000, 1)


def test_module_entry_point_downloads_as_supervisord_runs_it(hub, models_file, studio_root):
    import subprocess
    import sys

    from tests.helpers import REPO

    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"STUDIO_ROOT": str(studio_root), "HF_ENDPOINT": hub.url})
    result = subprocess.run([sys.executable, "-m", "studio.fetch", "--models-file", str(models_file)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "caption-GGUF: ready (2 files, 800000 bytes)" in result.stderr
    assert "Image-Turbo: ready (4 files" in result.stderr
    assert "HTTP Request:" not in result.stderr  # the hub client's line per request stays out of the log
    assert read_json(studio_root / ".studio" / "models-status.json")["state"] == "ready"


def test_comfyuis_files_come_after_the_studios_once_comfyui_is_installed(make_settings, hub, models_file, tmp_path):
    hub.add("Comfy-Org/turbo", {"split_files/diffusion_models/turbo_bf16.safetensors": _payload(50_000, 5),
                                "split_files/vae/ae.safetensors": _payload(20_000, 6)},
            lfs=("split_files/diffusion_models/turbo_bf16.safetensors",))
    comfy_file = tmp_path / "models-comfyui.txt"
    comfy_file.write_text("Comfy-Org/turbo main split_files/diffusion_models/turbo_bf16.safetensors,"
                          "split_files/vae/ae.safetensors comfyui\n")
    settings, code = _run(make_settings, hub, models_file, comfyui_file=comfy_file)
    models = Workspace(settings.root).models
    assert code == 0 and not (models / "comfyui").exists()  # no ComfyUI in the workspace: not downloaded
    (settings.root / "ComfyUI").mkdir()
    _, code = _run(make_settings, hub, models_file, comfyui_file=comfy_file)
    assert code == 0
    assert (models / "comfyui" / "split_files" / "vae" / "ae.safetensors").read_bytes() == _payload(20_000, 6)
    status = read_json(Workspace(settings.root).model_status_file)
    assert [m["key"] for m in status["models"]] == ["caption", "zimage", "comfyui"]  # after the studio's own
    assert status["models"][2]["name"] == "turbo for ComfyUI"
    assert status["state"] == "ready"
    # a target folder that models.txt uses already is refused, with the line named, in the banner
    comfy_file.write_text("Comfy-Org/turbo main split_files/vae/ae.safetensors Z-Image-Turbo\n")
    _, code = _run(make_settings, hub, models_file, comfyui_file=comfy_file)
    status = read_json(Workspace(settings.root).model_status_file)
    assert code == 0 and status["state"] == "error"
    assert "models-comfyui.txt, line 1: target folder 'Z-Image-Turbo' is already used by models.txt" in status["error"]


def test_comfyuis_files_never_take_the_space_training_needs(make_settings, hub, models_file, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    hub.add("Comfy-Org/turbo", {"split_files/vae/ae.safetensors": _payload(70_000, 6)})
    comfy_file = tmp_path / "models-comfyui.txt"
    comfy_file.write_text("Comfy-Org/turbo main split_files/vae/ae.safetensors comfyui\n")
    usage = namedtuple("usage", "total used free")
    free = fetch.OPTIONAL_RESERVE + 50_000  # room for everything, but ComfyUI's copy would eat into the reserve
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * free, 9 * free, free))
    settings = make_settings(HF_ENDPOINT=hub.url)
    (settings.root / "ComfyUI").mkdir(parents=True)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05, comfyui_file=comfy_file) == 0
    entries = {m["key"]: m for m in read_json(Workspace(settings.root).model_status_file)["models"]}
    assert entries["zimage"]["state"] == "ready" and entries["caption"]["state"] == "ready"
    assert entries["comfyui"]["state"] == "error"
    assert entries["comfyui"]["error"].startswith("turbo for ComfyUI was not downloaded: its 70 KB would leave less "
                                                  "than 15 GB of the")
    assert not (Workspace(settings.root).models / "comfyui" / "split_files" / "vae" / "ae.safetensors").exists()


def test_the_shipped_comfyui_models_file_names_the_workflows_files():
    from studio.comfyui_models import category_folders, comfyui_specs
    from studio.models_txt import load_models_txt
    from trainer.engine.comfy_workflow import MODEL_FILES

    specs = comfyui_specs(load_models_txt())
    assert [spec.repo for spec in specs] == ["Comfy-Org/z_image_turbo"]
    names = {pattern.rsplit("/", 1)[-1] for spec in specs for pattern in spec.patterns}
    assert set(MODEL_FILES.values()) <= names
    assert set(MODEL_FILES) <= set(category_folders(specs))


def test_sizes_read_as_the_pages_write_them():
    """1000-based, one decimal under 10 and none above (studio.js formatBytes), so a message and a page agree."""
    from studio.model_status import format_bytes

    assert [format_bytes(n) for n in (0, 999, 1000, 9_949, 12_345, 999_499, 1_500_000, 15e9, 123.4e9, 2.5e12)] == \
        ["0 B", "999 B", "1.0 KB", "9.9 KB", "12 KB", "999 KB", "1.5 MB", "15 GB", "123 GB", "2.5 TB"]
