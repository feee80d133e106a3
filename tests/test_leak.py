"""How much a LoRA changes pictures without its trigger word (trainer.leak): the share on pictures made to
order, a preview step's mean, what the samples API gives the pages, the real previews of a job, and the advice a
finished job gives when its LoRA leaks (not when it already preserves the class)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.test_engine_train import make_dataset, tiny_config
from trainer import leak
from trainer.engine import TrainingControl, train


def _picture(value: int, square: int | None = None) -> Image.Image:
    pixels = np.full((128, 128, 3), value, dtype=np.uint8)
    if square is not None:  # a bright square in the middle: what a LoRA changed
        pixels[32:96, 32:96] = square
    return Image.fromarray(pixels)


def test_the_share_of_the_change_that_remains_without_the_trigger_word():
    base, lora = _picture(100), _picture(100, square=250)
    assert leak.leak(base, lora, base.copy()) == 0.0  # without the trigger word: the base picture
    assert leak.leak(base, lora, lora.copy()) == 1.0  # the same change with and without it
    half = leak.leak(base, lora, _picture(100, square=175))
    assert half == pytest.approx(0.5, abs=0.01)
    assert leak.leak(base, base.copy(), lora) is None  # the LoRA has not changed the picture yet
    # compared small: a different size or mode of the same picture is the same picture
    assert leak.leak(base, lora.resize((512, 512)), lora.convert("RGBA")) == pytest.approx(1.0, abs=0.01)


def test_a_steps_mean_share_and_what_the_samples_give_the_pages(tmp_path):
    from trainer import library

    step = tmp_path / "samples" / "step_000010"
    step.mkdir(parents=True)
    entries = [{"index": 0, "prompt": "zkw a", "leak": 0.9, "lora": "0.png", "lora_no_trigger": "0_notrigger.png"},
               {"index": 1, "prompt": "zkw b", "leak": 0.5, "lora": "1.png", "lora_no_trigger": "1_notrigger.png"},
               {"index": 2, "prompt": "c", "leak": None, "lora": "2.png"}]
    (step / "prompts.json").write_text(json.dumps({"step": 10, "prompts": entries}))
    for name in ("0.png", "0_notrigger.png", "1.png", "1_notrigger.png", "2.png"):
        _picture(50).save(step / name)
    assert leak.step_leak(step) == 0.7
    assert leak.step_leak(tmp_path / "nothing") is None
    pairs = library.samples(tmp_path)[-1]["pairs"]
    assert [(p["leak"], p["leaks"]) for p in pairs] == [(0.9, True), (0.5, False), (None, False)]
    assert library.leak_summary(library.samples(tmp_path)) == {"share": 0.7, "step": 10, "leaks": True}
    assert library.leak_summary([]) is None
    assert library.leak_summary([{"step": 0, "base_only": True, "pairs": [{"leak": None}]}]) is None
    (step / "prompts.json").write_text(json.dumps({"prompts": [{"prompt": "x", "leak": "much"}]}))  # hand-edited
    assert library.samples(tmp_path)[-1]["pairs"][0]["leak"] is None and leak.step_leak(step) is None


@pytest.mark.slow
def test_a_jobs_previews_measure_it_and_a_leaking_lora_gets_advice(tmp_path, demo_paths, monkeypatch):
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    previews = {"sample_every": 4, "sample_width": 64, "sample_height": 64, "sample_steps": 2,
                "sample_prompts": ["[trigger] a photo", "a plain photo"]}
    job = tmp_path / "jobs" / "measured"
    result = train(tiny_config(steps=8, **previews), dataset, job, demo_paths, TrainingControl(job), None, **kwargs)
    for folder in ("step_000004", "step_000008"):
        entries = json.loads((job / "samples" / folder / "prompts.json").read_text())["prompts"]
        assert all("leak" in e for e in entries) and entries[1]["leak"] is None  # no trigger word to take out
        assert entries[0]["leak"] is None or entries[0]["leak"] >= 0
    assert result["leak"] == leak.step_leak(job / "samples" / "step_000008")

    events = []
    monkeypatch.setattr(leak, "step_leak", lambda folder: 0.83)
    leaky = tmp_path / "jobs" / "leaky"
    train(tiny_config(steps=2, **previews), dataset, leaky, demo_paths, TrainingControl(leaky), events.append,
          **kwargs)
    advice = leak.advice(0.83, demo=True)  # the demo's random models: said as meaning nothing there
    assert "83% of its change" in advice and "Preserve the class" in advice and "Demo mode" in advice
    assert "Demo mode" not in leak.advice(0.83)
    assert advice in (leaky / "log.txt").read_text() and events[-1]["notices"] == [advice]
    assert "Without trigger:   83% of its change remains on the final previews" in (
        leaky / "lora" / "README.txt").read_text()  # and so in the model card when it is published

    kept = tmp_path / "jobs" / "kept"  # it already preserves the class: nothing to advise
    train(tiny_config(steps=2, preserve_class="shape", **previews), dataset, kept, demo_paths, TrainingControl(kept),
          None, **kwargs)
    assert "leaks" not in (kept / "log.txt").read_text() and "Preserve the class (advanced" not in (
        kept / "log.txt").read_text()
    monkeypatch.setattr(leak, "step_leak", lambda folder: 0.3)
    fine = tmp_path / "jobs" / "fine"
    train(tiny_config(steps=2, **previews), dataset, fine, demo_paths, TrainingControl(fine), None, **kwargs)
    assert "Preserve the class (advanced" not in (fine / "log.txt").read_text()
