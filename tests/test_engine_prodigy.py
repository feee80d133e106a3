"""optimizer prodigy: Prodigy finds the step size itself (learning_rate multiplies it); the job trains, the metrics
carry the step size it used, the form warns about a rate meant for the other optimizer, the estimate counts its
memory, and a machine without the package gets a sentence."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.test_engine_train import _encoded_dataset, _eval_loss, _lora, make_dataset, tiny_config
from trainer.engine import TrainingControl, train
from trainer.engine.errors import TrainingError
from trainer.engine.loop import make_optimizer, step_size
from trainer.recipes import get_recipe
from trainer.recipes.zimage_plan import disk_bytes, estimate

pytestmark = pytest.mark.slow


def test_a_prodigy_job_finds_its_step_size_and_learns(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "prodigy"
    cfg = tiny_config(steps=60, optimizer="prodigy", learning_rate=1.0, save_every=60)
    result = train(cfg, dataset, job, demo_paths, TrainingControl(job), None, device="cpu",
                   cache_dir=tmp_path / "cache")
    assert result["steps"] == 60
    log = (job / "log.txt").read_text()
    assert "Optimizer: Prodigy (it finds the step size itself; learning_rate 1 multiplies it" in log
    points = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    sizes = [p["lr"] for p in points]
    # the metrics carry the step size Prodigy used (its estimate d times the scheduled rate), not the multiplier:
    # it starts at Prodigy's d0 = 1e-6 and grows as the weights travel (over about a hundred steps)
    assert sizes[0] < 1e-5 and sizes[-1] > 10 * sizes[10] and max(sizes) < 1.0
    lora = _lora(result["lora_path"])
    assert any(float(t.abs().max()) > 0 for k, t in lora.items() if "lora_B" in k)
    from safetensors import safe_open

    with safe_open(str(result["lora_path"]), "pt") as handle:
        assert handle.metadata()["ss_optimizer"] == "prodigyopt.prodigy.Prodigy"
    state = torch.load(job / "checkpoints" / "step_000060" / "state.pt", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["d"] == pytest.approx(sizes[-1], rel=1e-6)


def test_prodigy_lowers_the_loss_without_a_learning_rate_to_guess(tmp_path, demo_paths):
    """AdamW at its LoRA rate of 1e-4 hardly moves the tiny model in 120 steps; Prodigy at 1 finds a rate that does."""
    from diffusers import ZImagePipeline

    from trainer.engine import model as zmodel

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    pipe = ZImagePipeline.from_pretrained(str(demo_paths.zimage_dir), dtype=torch.float32)
    latents, embeds = _encoded_dataset(pipe, dataset, tiny_config())
    zmodel.merge_adapter(pipe.transformer, zmodel.LoraDelta.load(demo_paths.training_adapter))
    losses = {"base": _eval_loss(pipe.transformer, latents, embeds)}
    for optimizer, rate in (("adamw", 1e-4), ("prodigy", 1.0)):
        cfg = tiny_config(steps=120, optimizer=optimizer, learning_rate=rate, save_every=120)
        result = train(cfg, dataset, tmp_path / "jobs" / optimizer, demo_paths, None, None, device="cpu",
                       cache_dir=tmp_path / "cache")
        pipe.load_lora_weights(str(result["lora_path"]), adapter_name=optimizer)
        losses[optimizer] = _eval_loss(pipe.transformer, latents, embeds)
        pipe.delete_adapters(optimizer)
    assert losses["prodigy"] < losses["base"] - 0.01 and losses["prodigy"] < losses["adamw"], losses


def test_the_optimizer_choice_without_the_package_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    cfg = get_recipe("zimage-turbo").config_from_dict({"optimizer": "prodigy", "learning_rate": 1})
    with pytest.raises(TrainingError, match="optimizer prodigy needs the prodigyopt package"):
        make_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))], torch.device("cpu"), print)


def test_step_size_is_the_rate_for_adamw_and_the_rate_times_d_for_prodigy():
    from prodigyopt import Prodigy

    weight = torch.nn.Parameter(torch.zeros(3))
    assert step_size(torch.optim.AdamW([weight], lr=1e-4), 1e-4) == 1e-4
    prodigy = Prodigy([weight], lr=1.0)
    prodigy.param_groups[0]["d"] = 2e-4
    assert step_size(prodigy, 0.5) == pytest.approx(1e-4)


def test_the_form_warns_about_a_rate_meant_for_the_other_optimizer():
    recipe = get_recipe("zimage-turbo")

    def notes(**fields):
        return {n["field"]: n["message"] for n in recipe.config_from_dict(fields).advice()}

    assert "Leave it at 1" in notes(optimizer="prodigy")["learning_rate"]  # the default 1e-4 with prodigy
    assert "learning_rate" not in notes(optimizer="prodigy", learning_rate=1)
    assert "A rate about 1 is for optimizer prodigy" in notes(learning_rate=1)["learning_rate"]
    assert "learning_rate" not in notes(learning_rate=3e-4)
    with pytest.raises(ValueError):
        recipe.config_from_dict({"optimizer": "prodigy", "learning_rate": 11})


def test_the_estimate_counts_prodigys_memory():
    recipe = get_recipe("zimage-turbo")
    adamw = recipe.config_from_dict({"rank": 32})
    prodigy = recipe.config_from_dict({"rank": 32, "optimizer": "prodigy", "learning_rate": 1})
    gpu = {c.optimizer: estimate(c, 20, "NVIDIA H100 80GB HBM3", demo=False) for c in (adamw, prodigy)}
    assert gpu["prodigy"].memory_gb == pytest.approx(gpu["auto"].memory_gb + 2.65e6 * 32 * 8 / 11 / 1e9, abs=0.1)
    assert gpu["prodigy"].seconds == gpu["auto"].seconds
    assert disk_bytes(prodigy, 4, demo=False) > disk_bytes(adamw, 4, demo=False)
