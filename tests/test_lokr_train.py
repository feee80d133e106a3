"""Training a LyCORIS LoKr (config network = lokr): the factor split as peft splits it, the delta applied through the
factors equal to peft's own Kronecker product, a real run on the tiny model writing a file ComfyUI's LoKr loader reads
(and the studio's own LoKr reader renders what was trained), going on from a LoKr file, and the plan's figures."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from tests.test_engine_train import _encoded_dataset, _eval_loss, _lora, make_dataset, tiny_config
from trainer.engine import TrainingError, train
from trainer.lokr_layout import factor_shapes, factorization, lokr_params, step_cost
from trainer.lora_file import START_LORA_FILE
from trainer.recipes.zimage_plan import DEMO_SHAPE, estimate


def test_the_split_is_peft_s_for_every_size_and_factor():
    from peft.tuners.lokr.layer import factorization as peft_split

    for factor in (-1, 2, 4, 8, 16, 32):
        assert all(factorization(n, factor) == peft_split(n, factor) for n in range(1, 4100))
    # the full model's layers at the default factor: w1 16x16, w2 the rest
    assert factor_shapes(3840, 3840, 16) == ((16, 16), (240, 240))
    assert factor_shapes(3840, 10240, 16) == ((16, 16), (640, 240))
    assert factor_shapes(256, 15360, 32) == ((32, 32), (480, 8))  # peft keeps (factor, rest) even when larger


def _transformer(demo_paths):
    from trainer.engine import model as zmodel

    return zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = [torch.randn(16, 1, 8, 8, generator=g)]
    caption = [torch.randn(7, 32, generator=g)]
    return latents, torch.tensor([0.4]), caption


def _forward(model, inputs) -> torch.Tensor:
    latents, t, caption = inputs
    return model(latents, t, caption, return_dict=False)[0][0]


def test_the_delta_through_the_factors_is_peft_s_kronecker_product(demo_paths):
    from peft.tuners.lokr.layer import Linear as PeftLoKrLinear

    from trainer.engine.lokr_train import KronLinear, add_lokr, lokr_layers
    from trainer.engine.sampling import lora_strength

    model = _transformer(demo_paths)
    inputs = _inputs()
    base = _forward(model, inputs).detach()
    params = add_lokr(model, 4, seed=1)
    assert torch.equal(_forward(model, inputs).detach(), base)  # w1 starts at zero: no change at step 0
    with torch.no_grad():
        for p in params:
            p.normal_(0, 0.3)
    layers = lokr_layers(model)
    assert len(layers) == 16 and all(type(m) is KronLinear for m in layers.values())

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        for p in params:
            p.grad = None
        out = _forward(model, inputs)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in params]

    ours, our_grads = run()
    for module in layers.values():
        module.__class__ = PeftLoKrLinear  # peft's own forward: the full w1 ⊗ w2 built and multiplied
    theirs, their_grads = run()
    assert not torch.allclose(ours, base, atol=1e-3)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-3) for a, b in zip(our_grads, their_grads, strict=True))
    for module in layers.values():
        module.__class__ = KronLinear
    with torch.no_grad():  # a preview prompt's --m 0 turns the LoKr off, as it does a LoRA
        with lora_strength(model, 0.0):
            assert torch.allclose(_forward(model, inputs), base, atol=1e-6)
        assert torch.allclose(_forward(model, inputs), ours, atol=1e-6)


def test_a_lokr_job_writes_a_file_comfyui_reads_that_renders_what_it_trained(tmp_path, demo_paths):
    from trainer.engine import model as zmodel

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "lokr"
    cfg = tiny_config(network="lokr", lokr_factor=4, save_dtype="fp32", sample_every=20)
    result = train(cfg, dataset, job, demo_paths, None, None, device="cpu", cache_dir=tmp_path / "cache")
    # previews as a LoRA's: the base model's (the LoKr off), then the LoKr's, which draw otherwise
    base, trained = (np.asarray(Image.open(job / "samples" / step / "0.png"), float)
                     for step in ("base", "step_000020"))
    assert np.abs(base - trained).mean() > 0.5

    log = (job / "log.txt").read_text()
    trained = re.search(r"LoKr factor 4 on all layers: ([\d,]+) trainable parameters", log)
    assert trained and int(trained.group(1).replace(",", "")) == lokr_params(4, **DEMO_SHAPE)
    with safe_open(result["lora_path"], "pt") as handle:
        keys, meta = set(handle.keys()), handle.metadata()
    # ComfyUI's names, the factors whole, no alpha (scale 1), nothing else
    modules = {k.rpartition(".")[0] for k in keys}
    assert len(modules) == 16 and keys == {f"{m}.lokr_{w}" for m in modules for w in ("w1", "w2")}
    assert all(m.startswith("diffusion_model.layers.") for m in modules)
    assert (meta["network"], meta["lokr_factor"], meta["ss_network_module"]) == ("lokr", "4", "lycoris.kohya")
    assert '"algo": "lokr"' in meta["ss_network_args"] and "lora_rank" not in meta
    readme = (job / "lora" / "README.txt").read_text()
    assert readme.startswith("toy: a LyCORIS LoKr for") and "LoKr factor:       4" in readme

    # the studio's LoKr reader (Try it, the library) applied to the base gives the trained model's output
    lokr = zmodel.load_adapter_file(Path(result["lora_path"]), "toy")
    assert type(lokr).__name__ == "KronDelta"
    model = _transformer(demo_paths)
    zmodel.merge_adapter(model, zmodel.LoraDelta.load(demo_paths.training_adapter))
    from trainer.engine.lokr_train import add_lokr, start_from_lokr

    inputs = _inputs(2)
    with torch.no_grad():
        before = _forward(model, inputs)
        with zmodel.adapter_applied(model, lokr, 1.0):
            hooked = _forward(model, inputs)
        add_lokr(model, 4, seed=0)
        start_from_lokr(model, lokr, 4)
        trained_model = _forward(model, inputs)
    assert not torch.allclose(hooked, before, atol=1e-4)
    assert torch.allclose(hooked, trained_model, atol=1e-5)

    # it learned: the loss on fixed noise is lower with it than without
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline.from_pretrained(str(demo_paths.zimage_dir), dtype=torch.float32)
    latents, embeds = _encoded_dataset(pipe, dataset, cfg)
    zmodel.merge_adapter(pipe.transformer, zmodel.LoraDelta.load(demo_paths.training_adapter))
    without = _eval_loss(pipe.transformer, latents, embeds)
    with zmodel.adapter_applied(pipe.transformer, lokr, 1.0):
        assert _eval_loss(pipe.transformer, latents, embeds) < without


def test_a_lokr_job_goes_on_from_a_lokr_file_of_its_factor(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    first = train(tiny_config(steps=4, network="lokr", lokr_factor=4, save_dtype="fp32"), dataset,
                  tmp_path / "jobs" / "a", demo_paths, None, None, **kwargs)
    job = tmp_path / "jobs" / "b"
    job.mkdir(parents=True)
    shutil.copy(first["lora_path"], job / START_LORA_FILE)
    cfg = tiny_config(steps=1, learning_rate=1e-12, weight_decay=0.0, init_lora="toy", network="lokr", lokr_factor=4,
                      save_dtype="fp32")
    second = train(cfg, dataset, job, demo_paths, None, None, **kwargs)
    before, after = _lora(first["lora_path"]), _lora(second["lora_path"])
    assert before.keys() == after.keys() and all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    assert "Starting from the LoRA toy (16 modules) instead of from zero." in (job / "log.txt").read_text()

    other = tmp_path / "jobs" / "c"  # another factor splits the layers otherwise, and says which to set
    other.mkdir()
    shutil.copy(first["lora_path"], other / START_LORA_FILE)
    with pytest.raises(TrainingError, match="set the LoKr factor the file was trained with"):
        train(tiny_config(steps=1, init_lora="toy", network="lokr", lokr_factor=8), dataset, other, demo_paths, None,
              None, **kwargs)


def test_the_plan_counts_a_lokr_by_its_factor():
    from trainer.recipes import get_recipe

    recipe = get_recipe("zimage-turbo")

    def plan(**config):
        return estimate(recipe.config_from_dict({"name": "x", "steps": 1000, **config}), 20, "H100", False)

    lora = plan()
    # factor 8 is about a rank-32 LoRA's size, 16 a quarter of it; the smaller the factor, the longer a step
    assert lokr_params(8) == pytest.approx(2.65e6 * 32, rel=0.01) and lokr_params(16) < lokr_params(8) / 3.9
    assert plan(network="lokr", lokr_factor=16).disk_gb < lora.disk_gb
    assert plan(network="lokr", lokr_factor=4).seconds > plan(network="lokr", lokr_factor=16).seconds > lora.seconds
    assert step_cost(8) == pytest.approx(0.127, abs=0.001) and step_cost(-1) < step_cost(32) < step_cost(16)
    notes = recipe.config_from_dict({"name": "x", "network": "lokr", "alpha": 16}).advice()
    assert any(n["field"] == "alpha" and "does not apply to a LoKr" in n["message"] for n in notes)
