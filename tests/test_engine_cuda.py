"""The CUDA path (bf16 autocast, 8-bit base weights, previews) on the tiny pipeline; needs a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.engine import TrainingControl, train
from trainer.recipes import get_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("quantize,network", [("none", "lora"), ("float8", "lora"), ("int8", "lora"),
                                              ("float8", "lokr")])
def test_cuda_training_with_8bit_base_and_previews(tmp_path, make_settings, quantize, network):
    from safetensors.torch import load_file

    from studio.demo import ensure_demo_models
    from tests.test_engine_train import make_dataset

    paths = ensure_demo_models(make_settings(STUDIO_DEMO="1"), caption=False)
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "job"
    config = get_recipe("zimage-turbo").config_from_dict({
        "name": "toy", "trigger_word": "zkw", "steps": 6, "rank": 4, "learning_rate": 5e-3, "resolutions": [64, 96],
        "quantize_base": quantize, "save_every": 3, "sample_every": 3, "sample_width": 64, "sample_height": 64,
        "sample_steps": 2, "sample_prompts": ["[trigger] a square"], "network": network, "lokr_factor": 4,
        "save_dtype": "fp32",
    })
    events = []
    result = train(config, dataset, job, paths, TrainingControl(job), events.append, device="cuda")
    assert result["steps"] == 6 and math.isfinite(result["final_loss"])
    assert any(e["gpu_mem_gb"] for e in events if e["phase"] == "training")
    assert (job / "samples" / "step_000006" / "0.png").is_file()
    lora = load_file(result["lora_path"])
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in lora.values())
    log = (job / "log.txt").read_text()
    if quantize == "float8" and torch.cuda.get_device_capability() >= (8, 9):
        assert "float8 with float8 matmuls" in log and "relative error against bf16" in log
    elif quantize != "none":
        assert f"stored in {quantize}" in log or "float8 matmuls are off" in log


def test_cuda_speed_options_train_and_report_the_step_split(tmp_path, make_settings):
    """compile, the attention kernel choice, float8 matmuls and deferred loss reads together on a GPU."""
    import json

    from studio.demo import ensure_demo_models
    from tests.test_engine_train import make_dataset

    paths = ensure_demo_models(make_settings(STUDIO_DEMO="1"), caption=False)
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "job"
    config = get_recipe("zimage-turbo").config_from_dict({
        "name": "toy", "trigger_word": "zkw", "steps": 8, "rank": 4, "learning_rate": 5e-3, "resolutions": [64],
        "quantize_base": "float8", "compile": True, "attention_backend": "cudnn", "log_every": 3,
        "gradient_checkpointing": "auto", "save_every": 4, "sample_every": 4, "sample_width": 64,
        "sample_height": 64, "sample_steps": 2, "sample_prompts": ["[trigger] a square"],
    })
    result = train(config, dataset, job, paths, TrainingControl(job), None, device="cuda")
    assert result["steps"] == 8 and math.isfinite(result["final_loss"])
    lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 9))
    assert any("timing" in line and line["timing"]["step_ms"] > 0 for line in lines)
    log = (job / "log.txt").read_text()
    assert "Attention:" in log and ("torch.compile:" in log or "torch.compile is off" in log)
    assert "GiB of activations per block" in log and "measured" in log  # planned from one measured block
    assert (job / "lora" / "proof_grid.png").is_file() and (job / "samples" / "base" / "0.png").is_file()
