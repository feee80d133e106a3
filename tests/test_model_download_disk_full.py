"""A disk that fills up mid-download: the banner names how much more room the model needs, and the partial file
stays for the next start to continue."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import errno

from studio import fetch, hub_files
from studio.atomic import read_json
from studio.model_status import banners
from studio.workspace import Workspace
from tests.test_fetch import FAST, _payload, _ranges, hub, models_file  # noqa: F401 - the stand-in hub, fixtures

CAPTION_REPO, BIG_FILE = "org/caption-GGUF", "model-Q8_0.gguf"


def test_a_disk_full_mid_download_names_the_space_still_needed(make_settings, hub, models_file, monkeypatch):
    big = _payload(1_500_000, 21)
    hub.repos[CAPTION_REPO][BIG_FILE] = big
    settings = make_settings(HF_ENDPOINT=hub.url)
    real_get = hub_files._ranged_get

    def fill_the_disk(url, headers, part, expected, meter, label):
        if label.endswith(BIG_FILE):  # 700 KB of the file land, then the volume is full
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(big[:700_000])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_get(url, headers, part, expected, meter, label)

    monkeypatch.setattr(hub_files, "_ranged_get", fill_the_disk)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    caption = read_json(Workspace(settings.root).model_status_file)["models"][0]
    assert caption["state"] == "error" and not caption["retrying"]
    # the small mmproj file is done; 800 KB of the big one are still to come
    assert caption["error"].startswith("The disk filled up while downloading caption-GGUF: it needs 800 KB more")
    assert "continues where it stopped" in caption["error"]
    text = " ".join(b["text"] for b in banners(settings))
    assert "it needs 800 KB more" in text

    folder = Workspace(settings.root).models / "Qwen2.5-VL-7B-Instruct-GGUF"
    assert (folder / "mmproj-f16.gguf").read_bytes() == _payload(200_000, 2)  # nothing complete was deleted
    monkeypatch.setattr(hub_files, "_ranged_get", real_get)  # room again, the fetcher started again
    hub.requests.clear()
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    assert _ranges(hub, BIG_FILE) == [700_000]
    assert (folder / BIG_FILE).read_bytes() == big
