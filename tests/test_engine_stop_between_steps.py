"""Stop is heard while the run does its long work between steps, not only at the next step: encoding a big dataset,
rendering the base model's previews, rendering a step's previews, an evaluation pass. Nothing trained is lost (the
steps before a stop during previews are saved); a stop before the first step saves nothing and the job starts
again from the beginning."""

from __future__ import annotations

import pytest

from tests.test_engine_train import make_dataset, tiny_config
from trainer.engine import TrainingControl, train
from trainer.engine.checkpoints import latest_checkpoint

pytestmark = pytest.mark.slow


def _stop_on(control: TrainingControl, phase: str, step: int | None = None, message: str = ""):
    """on_progress for train(): asks to stop at the first report of `phase` (at `step`, its message holding
    `message`), as the page's Stop button does while that work goes on."""
    seen = []

    def on_progress(event: dict) -> None:
        seen.append((event.get("phase"), event.get("step"), event.get("message") or ""))
        if event.get("phase") == phase and (step is None or event.get("step") == step) \
                and message in (event.get("message") or ""):
            control.request_stop()

    return on_progress, seen


def test_a_stop_while_the_images_are_encoded_ends_it_there(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data", count=3)
    control = TrainingControl(tmp_path / "job")
    on_progress, seen = _stop_on(control, "caching", message="Encoding images and captions")
    result = train(tiny_config(steps=6), data, tmp_path / "job", demo_paths, control, on_progress)
    assert result["stopped"] and result["steps"] == 0 and result["lora_path"] is None
    assert not [phase for phase, _step, message in seen if phase == "loading" and "transformer" in message]
    assert latest_checkpoint(tmp_path / "job") is None  # nothing trained: nothing saved
    assert "Stopped before training began" in (tmp_path / "job" / "log.txt").read_text()


def test_a_stop_while_the_base_previews_render_ends_before_the_first_step(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data", count=2)
    control = TrainingControl(tmp_path / "job")
    on_progress, seen = _stop_on(control, "sampling", step=0)
    config = tiny_config(steps=6, sample_every=3, sample_prompts=["[trigger] a", "[trigger] b", "[trigger] c"])
    result = train(config, data, tmp_path / "job", demo_paths, control, on_progress)
    assert result["stopped"] and result["steps"] == 0
    assert not list((tmp_path / "job" / "samples" / "base").glob("*.png"))  # ended before its first picture
    assert latest_checkpoint(tmp_path / "job") is None


def test_a_stop_while_a_steps_previews_render_keeps_the_steps_trained(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data", count=2)
    control = TrainingControl(tmp_path / "job")
    on_progress, _seen = _stop_on(control, "sampling", step=3)
    config = tiny_config(steps=6, sample_every=3, save_every=100, sample_prompts=["[trigger] a", "[trigger] b"])
    result = train(config, data, tmp_path / "job", demo_paths, control, on_progress)
    assert result["stopped"] and result["steps"] == 3
    assert latest_checkpoint(tmp_path / "job")[0] == 3  # resume goes on from step 3
    assert not (tmp_path / "job" / "samples" / "step_000003").exists()  # no half set of previews


def test_a_stop_during_an_evaluation_ends_it(tmp_path, demo_paths, monkeypatch):
    from trainer.engine import evaluation

    data = make_dataset(tmp_path / "data", count=3)
    control = TrainingControl(tmp_path / "job")
    measured = []
    real_total = evaluation.Evaluator._total

    def total(self, indices):  # the stop comes as the first evaluation starts
        measured.append(len(indices))
        control.request_stop()
        return real_total(self, indices)

    monkeypatch.setattr(evaluation.Evaluator, "_total", total)
    result = train(tiny_config(steps=6, eval_every=2), data, tmp_path / "job", demo_paths, control, None)
    assert result["stopped"] and result["steps"] == 0 and len(measured) == 1  # the first pass, ended at once
    assert "evaluation loss" not in (tmp_path / "job" / "log.txt").read_text()  # not measured to its end
