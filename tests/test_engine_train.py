"""End-to-end training on the tiny Z-Image pipeline: loss goes down, exact resume after a stop or a
crash, the LoRA file's keys/metadata and loading in diffusers, and the user-facing failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from trainer.engine import TrainingControl, TrainingError, train
from trainer.recipes import get_recipe

pytestmark = pytest.mark.slow

SHAPES = [((30, 60, 200), (250, 220, 40)), ((200, 40, 40), (240, 240, 240)), ((20, 160, 60), (10, 10, 10))]


def make_dataset(folder: Path, count: int = 3, size=(80, 64), captions: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        bg, fg = SHAPES[i % len(SHAPES)]
        im = Image.new("RGB", size, bg)
        draw = ImageDraw.Draw(im)
        (draw.ellipse if i % 2 else draw.rectangle)([16, 12, size[0] - 16, size[1] - 12], fill=fg)
        im.save(folder / f"img{i}.png")
        if captions:
            (folder / f"img{i}.txt").write_text(f"[trigger] shape number {i}")
    (folder / "dataset.json").write_text(json.dumps({"name": folder.name, "trigger_word": "zkw", "images": count}))
    return folder


def tiny_config(**overrides):
    base = {
        "name": "toy",
        "trigger_word": "zkw",
        "steps": 20,
        "rank": 4,
        "learning_rate": 5e-3,
        "resolutions": [64],
        "timestep_sampling": "uniform",
        "caption_dropout": 0.0,
        "gradient_checkpointing": False,
        "save_every": 10,
        "keep_last": 2,
        "sample_every": 0,
        "sample_width": 64,
        "sample_height": 64,
        "sample_steps": 2,
        "sample_prompts": ["[trigger] a yellow square"],
    }
    base.update(overrides)
    return get_recipe("zimage-turbo").config_from_dict(base)


class StopAfter(TrainingControl):
    """Stops after `steps` optimizer steps (should_stop is asked once before each step)."""

    def __init__(self, job_dir: Path, steps: int):
        super().__init__(job_dir)
        self.calls, self.steps = 0, steps

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.steps or super().should_stop()


class Crash(BaseException):
    pass


class ActAfter(TrainingControl):
    """Runs `action` right after `steps` optimizer steps (take_requests is asked once per step)."""

    def __init__(self, job_dir: Path, steps: int, action):
        super().__init__(job_dir)
        self.calls, self.steps, self.action = 0, steps, action

    def take_requests(self) -> set[str]:
        self.calls += 1
        if self.calls > self.steps:
            self.action()
        return super().take_requests()


def _crash():
    raise Crash()


def _hang():
    import time

    time.sleep(600)


def CrashAfter(job_dir: Path, steps: int) -> ActAfter:  # noqa: N802 - reads like the class it builds
    """Dies (like a killed process: no checkpoint) right after `steps` optimizer steps."""
    return ActAfter(job_dir, steps, _crash)


def HangAfter(job_dir: Path, steps: int) -> ActAfter:  # noqa: N802
    """Blocks after `steps` optimizer steps so a test can SIGKILL the process there."""
    return ActAfter(job_dir, steps, _hang)


def _lora(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _losses(job_dir: Path) -> list[tuple[int, float]]:
    lines = (job_dir / "metrics.jsonl").read_text().splitlines()
    return [(json.loads(line)["step"], json.loads(line)["loss"]) for line in lines]


@torch.no_grad()
def _eval_loss(transformer, latents, embeds) -> float:
    """Flow-matching loss at fixed noise levels and noise, so two models can be compared."""
    g = torch.Generator("cpu").manual_seed(0)
    total = []
    for sigma in (0.25, 0.5, 0.75):
        noise = torch.randn(latents.shape, generator=g)
        x_t = (1 - sigma) * latents + sigma * noise
        out = transformer(list(x_t.unsqueeze(2).unbind(0)), torch.full((len(latents),), 1 - sigma), embeds,
                          return_dict=False)[0]
        v = -torch.stack(out).squeeze(2)
        total.append(float(((v - (noise - latents)) ** 2).mean()))
    return sum(total) / len(total)


def test_twenty_steps_reduce_loss_and_write_a_comfyui_lora(tmp_path, demo_paths):
    from diffusers import ZImagePipeline

    from trainer.engine import model as zmodel

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "job1"
    events = []
    cfg = tiny_config(sample_every=10, timestep_sampling="weighted")
    result = train(cfg, dataset, job, demo_paths, TrainingControl(job), events.append, device="cpu",
                   cache_dir=tmp_path / "cache")

    assert result["steps"] == 20 and not result["stopped"]
    assert result["encoder_calls"] == {"text_encoder": 1, "vae_encoder": 3}
    lora_path = Path(result["lora_path"])
    assert lora_path == job / "lora" / "toy.safetensors"
    assert {e["phase"] for e in events} >= {"loading", "caching", "training", "sampling", "saving", "done"}
    assert all(set(e) >= {"step", "total_steps", "loss", "smooth_loss", "it_per_s", "eta_s", "gpu_mem_gb",
                          "message"} for e in events)
    assert json.loads((job / "config.json").read_text())["steps"] == 20
    assert [s for s, _ in _losses(job)] == list(range(1, 21))
    assert "Done" in (job / "log.txt").read_text()
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["step_000010", "step_000020"]
    # finished: the earlier checkpoint keeps its LoRA, its training state goes; the last one stays whole
    assert (job / "checkpoints" / "step_000010" / "lora.safetensors").is_file()
    assert not (job / "checkpoints" / "step_000010" / "state.pt").exists()
    assert (job / "checkpoints" / "step_000020" / "state.pt").is_file()
    assert "Freed " in (job / "log.txt").read_text() and "the training state of 1 earlier checkpoint " in \
        (job / "log.txt").read_text()
    for step in ("step_000010", "step_000020"):
        assert (job / "samples" / step / "0.png").is_file()
        assert json.loads((job / "samples" / step / "prompts.json").read_text())["prompts"][0]["prompt"] == (
            "zkw a yellow square")

    # ComfyUI Z-Image key names, no adapter inside, metadata
    from safetensors import safe_open

    with safe_open(str(lora_path), "pt") as handle:
        keys, meta = sorted(handle.keys()), handle.metadata()
        dtypes = {handle.get_tensor(key).dtype for key in keys}
    assert dtypes == {torch.bfloat16} and meta["dtype"] == "bf16"  # half the size of fp32, as ComfyUI computes
    assert "diffusion_model.layers.0.attention.to_q.lora_A.weight" in keys
    assert "diffusion_model.layers.1.feed_forward.w2.lora_B.weight" in keys
    assert "diffusion_model.layers.0.adaLN_modulation.0.lora_A.weight" in keys
    assert len(keys) == 2 * 8 * 2 and all(k.startswith("diffusion_model.layers.") for k in keys)
    assert not any("refiner" in k or ".alpha" in k for k in keys)
    assert meta["base_model"] == "Tongyi-MAI/Z-Image-Turbo" and meta["lora_rank"] == "4"
    assert meta["steps"] == "20" and meta["trigger_word"] == "zkw" and json.loads(meta["resolution"]) == [64]
    assert len(meta["dataset_hash"]) == 64
    # what LoRA managers and model sites read: base model, title, trigger word
    assert meta["modelspec.architecture"] == "z-image-turbo/lora" and meta["ss_base_model_version"] == "z-image-turbo"
    assert meta["modelspec.title"] == meta["ss_output_name"] == lora_path.stem
    assert meta["modelspec.trigger_phrase"] == "zkw" and meta["modelspec.resolution"] == "64x64"
    assert json.loads(meta["ss_tag_frequency"]) == {lora_path.stem: {"zkw": int(meta["ss_num_train_images"])}}
    # how it was trained, under kohya's names (LoRA managers and model sites show them)
    assert {k: meta[k] for k in ("ss_network_dim", "ss_network_alpha", "ss_learning_rate", "ss_optimizer",
                                 "ss_max_train_steps", "ss_steps", "ss_resolution", "ss_seed")} == {
        "ss_network_dim": "4", "ss_network_alpha": "4", "ss_learning_rate": "0.005",
        "ss_optimizer": "torch.optim.adamw.AdamW", "ss_max_train_steps": "20", "ss_steps": "20",
        "ss_resolution": "(64, 64)", "ss_seed": str(cfg.seed)}
    adapter = _lora(demo_paths.training_adapter)
    trained = _lora(lora_path)
    assert not any(torch.equal(trained[k], adapter[k]) for k in keys if k in adapter)

    # the loss on fixed noise is lower with the LoRA than without (both with the adapter merged, as trained)
    pipe = ZImagePipeline.from_pretrained(str(demo_paths.zimage_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    latents, embeds = _encoded_dataset(pipe, dataset, cfg)
    zmodel.merge_adapter(pipe.transformer, zmodel.LoraDelta.load(demo_paths.training_adapter))
    before = _eval_loss(pipe.transformer, latents, embeds)
    pipe.load_lora_weights(str(lora_path), adapter_name="toy")
    after = _eval_loss(pipe.transformer, latents, embeds)
    assert after < before


def _encoded_dataset(pipe, dataset: Path, cfg):
    from diffusers.image_processor import VaeImageProcessor

    from trainer.engine import model as zmodel
    from trainer.engine.data import build_samples, load_pixels, read_dataset

    samples = build_samples(read_dataset(dataset, cfg, print), cfg.resolutions)
    processor = VaeImageProcessor(vae_scale_factor=16)
    latents = torch.stack([zmodel.encode_image(pipe.vae, processor.preprocess(load_pixels(s))) for s in samples])
    embeds = zmodel.encode_prompts(pipe.tokenizer, pipe.text_encoder, [s.item.caption for s in samples])
    return latents, embeds


def _render(pipe, seed: int = 3) -> np.ndarray:
    return pipe("zkw a yellow square", height=64, width=64, num_inference_steps=2, guidance_scale=0.0,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images[0]


def test_saved_lora_loads_in_diffusers_and_changes_the_output(tmp_path, demo_paths):
    from diffusers import ZImagePipeline

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "job1"
    result = train(tiny_config(steps=6, learning_rate=2e-2), dataset, job, demo_paths, TrainingControl(job),
                   None, device="cpu", cache_dir=tmp_path / "cache")
    pipe = ZImagePipeline.from_pretrained(str(demo_paths.zimage_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    base = _render(pipe)
    pipe.load_lora_weights(result["lora_path"], adapter_name="toy")
    assert "toy" in pipe.get_active_adapters()
    with_lora = _render(pipe)
    assert np.abs(with_lora - base).mean() > 1e-4
    pipe.unload_lora_weights()
    assert np.abs(_render(pipe) - base).max() < 1e-6
    # made smaller (the library's button, trainer.lora_resize), it still loads and draws nearly the same
    from trainer.lora_resize import resize

    smaller = resize(Path(result["lora_path"]), 2, tmp_path / "toy-r2.safetensors")
    pipe.load_lora_weights(str(smaller.path), adapter_name="small")
    close = np.abs(_render(pipe) - with_lora).mean()
    assert close < np.abs(with_lora - base).mean() and smaller.kept > 0.5


def test_resume_after_stop_and_after_crash_matches_an_uninterrupted_run(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    cfg = tiny_config(steps=8, save_every=4, keep_last=3, caption_dropout=0.3, timestep_sampling="weighted",
                      batch_size=2, gradient_accumulation=2, warmup_steps=2, resolutions=[64, 96])
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}

    straight = tmp_path / "jobs" / "straight"
    reference = train(cfg, dataset, straight, demo_paths, TrainingControl(straight), None, **kwargs)

    # stopped after 3 steps: a checkpoint for step 3 is written, then resume finishes the job
    stopped = tmp_path / "jobs" / "stopped"
    first = train(cfg, dataset, stopped, demo_paths, StopAfter(stopped, 3), None, **kwargs)
    assert first["stopped"] and first["steps"] == 3
    assert (stopped / "checkpoints" / "step_000003" / "lora.safetensors").is_file()
    resumed = train(cfg, dataset, stopped, demo_paths, TrainingControl(stopped), None, **kwargs)
    assert resumed["resumed_from"] == 3 and resumed["steps"] == 8

    # killed after 6 steps (no checkpoint for 5-6): resume starts again from step 4
    crashed = tmp_path / "jobs" / "crashed"
    with pytest.raises(Crash):
        train(cfg, dataset, crashed, demo_paths, CrashAfter(crashed, 6), None, **kwargs)
    assert [s for s, _ in _losses(crashed)] == list(range(1, 7))
    (crashed / "checkpoints" / ".tmp-step_000006-half-written").mkdir()  # a save cut off mid-write
    events = []
    again = train(cfg, dataset, crashed, demo_paths, TrainingControl(crashed), events.append, **kwargs)
    assert again["resumed_from"] == 4 and again["steps"] == 8
    step4 = json.loads((crashed / "metrics.jsonl").read_text().splitlines()[3])
    assert (events[0]["phase"], events[0]["loss"], events[0]["smooth_loss"]) == (
        "loading", step4["loss"], step4["smooth_loss"])  # the page keeps the loss while the run loads again
    # and says why its progress went back from step 6 to 4
    said = "Resumed from the checkpoint at step 4: the run had reached step 6 when it ended, so steps 5-6 are " \
           "trained again."
    assert said in events[-1]["notices"] and said in (crashed / "log.txt").read_text()
    assert "Resumed from" not in (stopped / "log.txt").read_text()  # a stop's checkpoint is where it stopped

    expected = _lora(reference["lora_path"])
    for job, result in ((stopped, resumed), (crashed, again)):
        assert _losses(job) == _losses(straight)
        got = _lora(result["lora_path"])
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        assert result["final_loss"] == reference["final_loss"]
    assert not list((crashed / "checkpoints").glob(".tmp-*"))


def test_caching_means_no_encoder_calls_on_a_second_job(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    first = train(tiny_config(steps=1), dataset, tmp_path / "a", demo_paths, None, None, **kwargs)
    second = train(tiny_config(steps=2), dataset, tmp_path / "b", demo_paths, None, None, **kwargs)
    assert first["encoder_calls"]["vae_encoder"] == 3
    assert second["encoder_calls"] == {"text_encoder": 0, "vae_encoder": 0}


def test_several_datasets_with_repeats_train_into_one_lora(tmp_path, demo_paths):
    from safetensors import safe_open

    close = make_dataset(tmp_path / "datasets" / "close", count=2)
    wide = make_dataset(tmp_path / "datasets" / "wide", count=3, size=(64, 80))
    (wide / "dataset.json").write_text(json.dumps({"name": "wide", "trigger_word": "wkz"}))  # a second concept
    job = tmp_path / "jobs" / "mix"
    result = train(tiny_config(steps=9), [(close, 3), (wide, 1)], job, demo_paths, None, None, device="cpu",
                   cache_dir=tmp_path / "cache")
    assert result["steps"] == 9
    assert result["encoder_calls"]["vae_encoder"] == 5  # each image encoded once, however often it repeats
    log = (job / "log.txt").read_text()
    assert "dataset close x3 + wide." in log
    assert "Dataset: 5 image(s), 5 training example(s) in 2 bucket(s)" in log
    assert "With repeats, an epoch trains on 9 image(s): close x3, wide x1." in log
    with safe_open(result["lora_path"], "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_num_train_images"] == "9"
    assert json.loads(meta["ss_dataset_dirs"]) == {"close": {"n_repeats": 3, "img_count": 2},
                                                   "wide": {"n_repeats": 1, "img_count": 3}}
    assert "Trigger words: zkw (close), wkz (wide)." in log
    assert json.loads(meta["trigger_words"]) == ["zkw", "wkz"] and meta["modelspec.trigger_phrase"] == "zkw, wkz"
    assert json.loads(meta["ss_tag_frequency"]) == {"toy": {"zkw": 6, "wkz": 3}}
    readme = (job / "lora" / "README.txt").read_text()
    assert "Trigger words:     zkw, wkz" in readme and "Trained on:        close x3 + wide" in readme
    assert "Put one of the trigger words ('zkw', 'wkz') in your prompt" in readme


def test_a_mix_resumes_exactly(tmp_path, demo_paths):
    mix = [(make_dataset(tmp_path / "datasets" / "close", count=2), 3),
           (make_dataset(tmp_path / "datasets" / "wide", count=3, size=(64, 80)), 1)]
    cfg = tiny_config(steps=6, save_every=3, batch_size=2, caption_dropout=0.3)
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    straight = tmp_path / "jobs" / "straight"
    reference = train(cfg, mix, straight, demo_paths, None, None, **kwargs)
    stopped = tmp_path / "jobs" / "stopped"
    assert train(cfg, mix, stopped, demo_paths, StopAfter(stopped, 3), None, **kwargs)["stopped"]
    resumed = train(cfg, mix, stopped, demo_paths, None, None, **kwargs)
    assert resumed["resumed_from"] == 3 and _losses(stopped) == _losses(straight)
    expected, got = _lora(reference["lora_path"]), _lora(resumed["lora_path"])
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_a_job_can_start_from_a_lora_file(tmp_path, demo_paths):
    from safetensors import safe_open

    from trainer.lora_file import START_LORA_FILE

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    first = train(tiny_config(steps=10, save_dtype="fp32"), dataset, tmp_path / "jobs" / "a", demo_paths, None, None,
                  **kwargs)
    job = tmp_path / "jobs" / "b"
    job.mkdir(parents=True)
    shutil.copy(first["lora_path"], job / START_LORA_FILE)
    # alpha 8 at rank 4: the file's weights still give the same LoRA (the scale is folded back)
    cfg = tiny_config(steps=1, learning_rate=1e-12, weight_decay=0.0, init_lora="toy", alpha=8, save_dtype="fp32")
    second = train(cfg, dataset, job, demo_paths, None, None, **kwargs)
    before, after = _lora(first["lora_path"]), _lora(second["lora_path"])
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    assert "Starting from the LoRA toy (16 modules) instead of from zero." in (job / "log.txt").read_text()
    with safe_open(second["lora_path"], "pt") as handle:
        assert handle.metadata()["started_from"] == "toy"
    assert "Started from:      toy" in (job / "lora" / "README.txt").read_text()

    # a job of another rank cannot start from it, and says which rank to set
    other = tmp_path / "jobs" / "c"
    other.mkdir()
    shutil.copy(first["lora_path"], other / START_LORA_FILE)
    with pytest.raises(TrainingError, match="this job 8: set the LoRA rank to 4"):
        train(tiny_config(steps=1, rank=8, init_lora="toy"), dataset, other, demo_paths, None, None, **kwargs)
    # nor a job whose LoRA layers leave some of its modules out
    with pytest.raises(TrainingError, match="leave out: set LoRA layers to all"):
        train(tiny_config(steps=1, init_lora="toy", lora_targets="attention"), dataset, other, demo_paths, None,
              None, **kwargs)


def test_alpha_mask_trains_the_visible_part_and_leaves_opaque_images_as_they_were(tmp_path, demo_paths):
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    opaque = make_dataset(tmp_path / "datasets" / "opaque")
    plain = train(tiny_config(steps=3), opaque, tmp_path / "jobs" / "plain", demo_paths, None, None, **kwargs)
    masked = train(tiny_config(steps=3, alpha_mask=True), opaque, tmp_path / "jobs" / "masked", demo_paths, None,
                   None, **kwargs)
    assert _losses(tmp_path / "jobs" / "plain") == _losses(tmp_path / "jobs" / "masked")  # bit for bit
    assert "no image has transparency: every image trains whole" in (tmp_path / "jobs" / "masked" / "log.txt"
                                                                      ).read_text()
    assert plain["final_loss"] == masked["final_loss"]

    cutouts = make_dataset(tmp_path / "datasets" / "cutouts")
    for path in sorted(cutouts.glob("*.png")):  # the subject kept, the background made transparent
        pixels = np.array(Image.open(path).convert("RGBA"))
        pixels[:, :12, 3] = 0
        Image.fromarray(pixels, "RGBA").save(path)
    runs = {}
    for flag in (False, True):
        job = tmp_path / "jobs" / f"cutouts-{flag}"
        train(tiny_config(steps=3, alpha_mask=flag), cutouts, job, demo_paths, None, None, **kwargs)
        runs[flag] = _losses(job)
    log = (tmp_path / "jobs" / "cutouts-True" / "log.txt").read_text()
    assert "Alpha mask: 3 of 3 image(s) have transparency and train on their visible part only." in log
    assert runs[True] != runs[False]  # the transparent part no longer counts


# ---------------------------------------------------------------- bad input


def test_empty_dataset(tmp_path, demo_paths):
    empty = tmp_path / "datasets" / "empty"
    empty.mkdir(parents=True)
    (empty / "dataset.json").write_text("{}")
    with pytest.raises(TrainingError, match="has no images"):
        train(tiny_config(), empty, tmp_path / "job", demo_paths, None, None, device="cpu")
    assert "has no images" in (tmp_path / "job" / "log.txt").read_text()


def test_missing_captions_error_or_default(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy", captions=False)
    with pytest.raises(TrainingError, match=r"3 image\(s\) have no caption \(img0.png"):
        train(tiny_config(missing_captions="error"), dataset, tmp_path / "j1", demo_paths, None, None, device="cpu")
    result = train(tiny_config(steps=1, missing_captions="default_caption", default_caption="[trigger] a thing"),
                   dataset, tmp_path / "j2", demo_paths, None, None, device="cpu", cache_dir=tmp_path / "cache")
    assert result["steps"] == 1


def test_corrupt_image_is_skipped_with_a_warning(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    (dataset / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    result = train(tiny_config(steps=1), dataset, tmp_path / "job", demo_paths, None, None, device="cpu",
                   cache_dir=tmp_path / "cache")
    assert result["steps"] == 1
    log = (tmp_path / "job" / "log.txt").read_text()
    assert "Skipping img1.png" in log and "2 image(s)" in log


def test_missing_model_files_name_the_path_and_models_txt_line(tmp_path, demo_paths):
    import dataclasses

    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    gone = dataclasses.replace(demo_paths, zimage_dir=tmp_path / "models" / "Z-Image-Turbo")
    with pytest.raises(TrainingError) as info:
        train(tiny_config(), dataset, tmp_path / "j1", gone, None, None, device="cpu")
    message = str(info.value)
    assert str(gone.zimage_dir / "model_index.json") in message and "Tongyi-MAI/Z-Image-Turbo" in message
    assert message.count(".") >= 1 and "\n" not in message

    partial = tmp_path / "partial"
    shutil.copytree(demo_paths.zimage_dir, partial)
    (partial / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(TrainingError, match="vae"):
        train(tiny_config(), dataset, tmp_path / "j2", dataclasses.replace(demo_paths, zimage_dir=partial), None,
              None, device="cpu")

    no_adapter = dataclasses.replace(demo_paths, training_adapter=tmp_path / "nope" / "adapter.safetensors")
    with pytest.raises(TrainingError, match="ostris/zimage_turbo_training_adapter"):
        train(tiny_config(), dataset, tmp_path / "j3", no_adapter, None, None, device="cpu")


def test_out_of_memory_names_the_setting_to_change(tmp_path, demo_paths, monkeypatch):
    from trainer.engine.loop import TrainingLoop

    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TrainingLoop, "step", oom)
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    with pytest.raises(TrainingError, match="OOM.*batch_size"):
        train(tiny_config(batch_size=4), dataset, tmp_path / "j1", demo_paths, None, None, device="cpu",
              cache_dir=tmp_path / "cache")
    # without a batch to shrink, the run first recomputes every block (tests/test_engine_memory.py)


def test_repeated_nan_fails_the_job(tmp_path, demo_paths, monkeypatch):
    from trainer.engine.loop import TrainingLoop

    monkeypatch.setattr(TrainingLoop, "losses",
                        lambda self, batch: iter([("flow", torch.tensor(float("nan"), requires_grad=True))]))
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    with pytest.raises(TrainingError, match="NaN.*5 steps in a row.*learning_rate"):
        train(tiny_config(), dataset, tmp_path / "job", demo_paths, None, None, device="cpu",
              cache_dir=tmp_path / "cache")
    assert "skipped" in (tmp_path / "job" / "log.txt").read_text()


def test_stop_and_sample_requests_by_file(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    job = tmp_path / "job"
    (job / "control").mkdir(parents=True)
    (job / "control" / "sample").touch()
    (job / "control" / "save").touch()

    class StopAfterTwo(TrainingControl):
        calls = 0

        def should_stop(self):
            self.calls += 1
            if self.calls == 3:
                (job / "control" / "stop").touch()
            return super().should_stop()

    result = train(tiny_config(steps=5), dataset, job, demo_paths, StopAfterTwo(job), None, device="cpu",
                   cache_dir=tmp_path / "cache")
    assert result["stopped"] and result["steps"] == 2
    assert (job / "samples" / "step_000001" / "0.png").is_file()
    assert (job / "checkpoints" / "step_000001").is_dir() and (job / "checkpoints" / "step_000002").is_dir()
    assert not (job / "control" / "sample").exists()


KILLED_CHILD = """
import sys
from pathlib import Path
from studio.registry import model_paths
from studio.settings import load_settings
from tests.test_engine_train import HangAfter, tiny_config
from trainer.engine import train

root, dataset, job, cache = (Path(a) for a in sys.argv[1:5])
paths = model_paths(load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1"}))
cfg = tiny_config(steps=8, save_every=4, keep_last=3)
train(cfg, dataset, job, paths, HangAfter(job, 6), None, device="cpu", cache_dir=cache)
"""


def test_resume_after_a_real_sigkill_matches_an_uninterrupted_run(tmp_path, demo_paths, demo_models_root):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import REPO

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    cfg = tiny_config(steps=8, save_every=4, keep_last=3)
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    straight = tmp_path / "jobs" / "straight"
    reference = train(cfg, dataset, straight, demo_paths, TrainingControl(straight), None, **kwargs)

    killed = tmp_path / "jobs" / "killed"
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(demo_models_root), str(dataset), str(killed),
                              str(tmp_path / "cache")], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:
            if (killed / "metrics.jsonl").is_file() and len(_losses(killed)) >= 6:
                break
            time.sleep(0.2)
        assert child.poll() is None, "the training child ended before it could be killed"
        assert len(_losses(killed)) == 6
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL

    resumed = train(cfg, dataset, killed, demo_paths, TrainingControl(killed), None, **kwargs)
    assert resumed["resumed_from"] == 4 and resumed["steps"] == 8
    assert _losses(killed) == _losses(straight)
    expected, got = _lora(reference["lora_path"]), _lora(resumed["lora_path"])
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
