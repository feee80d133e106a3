"""What the banner says when models.txt is wrong or the status file is odd: what failed and what to do, and never a
page without its banner."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import os
import time

from studio import fetch
from studio.atomic import atomic_write_json
from studio.model_status import banners, describe, download_state
from studio.workspace import Workspace
from tests.test_fetch import FAST, hub  # noqa: F401 - the stand-in hub


def test_a_malformed_models_txt_line_says_what_to_do(make_settings, hub, tmp_path):
    models = tmp_path / "models.txt"
    models.write_text("org/caption-GGUF main model-Q8_0.gguf Qwen2.5-VL-7B-Instruct-GGUF extra\n")
    settings = make_settings(HF_ENDPOINT=hub.url)
    assert fetch.run(settings, models, policy=FAST, progress_interval=0.05) == 0
    [banner] = banners(settings)
    assert banner["level"] == "error" and "models.txt line 1: expected 4 columns" in banner["text"]
    assert banner["text"].endswith("Correct the file, then run `python -m studio.supervisor_env ctl start fetch` in "
                                   "the studio folder (or restart the pod).")
    assert hub.requests == []


def test_a_missing_or_odd_percent_reads_as_zero_not_a_crash(settings):
    atomic_write_json(Workspace(settings.root).model_status_file, {
        "state": "downloading", "demo": False, "pid": os.getpid(), "updated_at": time.time(),
        "models": [{"key": "zimage", "name": "Z-Image-Turbo", "state": "downloading", "percent": None},
                   {"key": "adapter", "name": "adapter", "state": "downloading", "percent": float("nan")}]})
    [banner] = banners(settings)
    assert banner["text"] == "Downloading models: Z-Image-Turbo 0%, adapter 0%"
    assert download_state(settings, "zimage")["message"] == "downloading, 0%"
    assert describe({"name": "x", "state": "downloading", "percent": 250.0}) == "x 100%"
