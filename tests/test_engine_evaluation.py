"""The evaluation loss (fixed examples, noise levels and noise) and held-out images: what a job writes, that
measuring changes nothing in the training, exact resume, the overfitting note, and the choices behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.test_engine_train import StopAfter, make_dataset, tiny_config
from trainer.engine import TrainingError, train
from trainer.engine import checkpoints as ckpt
from trainer.engine.data import ImageItem, Sample
from trainer.engine.evaluation import (
    RISEN_EVALS,
    EvalPoint,
    Evaluator,
    pick_examples,
    split_holdout,
)
from trainer.engine.progress import Progress


def _evals(job: Path) -> list[dict]:
    return [json.loads(line) for line in (job / "eval.jsonl").read_text().splitlines()]


def _without_time(points: list[dict]) -> list[dict]:
    return [{k: v for k, v in p.items() if k != "seconds"} for p in points]


def _item(name: str, sha: str, size=(64, 64)) -> ImageItem:
    return ImageItem(Path(name), f"caption {name}", sha, *size)


# ------------------------------------------------------------ the choices
def test_the_held_out_images_follow_their_content_not_their_order():
    items = [_item(f"{i}.png", f"{i:064x}") for i in range(10)]
    train_a, held_a = split_holdout(items, 3)
    train_b, held_b = split_holdout(list(reversed(items)), 3)
    assert {i.sha256 for i in held_a} == {i.sha256 for i in held_b} and len(held_a) == 3
    assert len(train_a) == 7 and not {i.sha256 for i in train_a} & {i.sha256 for i in held_a}
    assert split_holdout(items, 0) == (items, [])


def test_every_copy_of_a_held_out_image_is_held_out():
    items = [_item("a.png", "1" * 64), _item("copy-of-a.png", "1" * 64), _item("b.png", "2" * 64),
             _item("c.png", "3" * 64)]
    for count in (1, 2):
        kept, held = split_holdout(items, count)
        assert not {i.sha256 for i in kept} & {i.sha256 for i in held}
        assert len({i.sha256 for i in held}) == count


def test_holding_out_every_distinct_image_is_refused():
    items = [_item("a.png", "1" * 64), _item("copy.png", "1" * 64), _item("b.png", "2" * 64)]
    with pytest.raises(TrainingError, match="2 distinct image"):
        split_holdout(items, 2)


def test_one_example_per_image_at_its_largest_bucket_not_mirrored():
    a, b = _item("a.png", "a" * 64), _item("b.png", "b" * 64)
    samples = [Sample(a, (64, 64)), Sample(a, (64, 64), flip=True), Sample(a, (128, 128), flip=True),
               Sample(a, (96, 96)), Sample(b, (64, 64))]
    chosen = pick_examples(samples, 4)
    assert sorted(chosen) == [3, 4]
    assert pick_examples(samples, 4, offset=10) == [i + 10 for i in chosen]
    assert len(pick_examples(samples, 1)) == 1


def _points(*values) -> list[EvalPoint]:
    return [EvalPoint(step * 100, train, held, 0.1) for step, (train, held) in enumerate(values)]


def _judge(points: list[EvalPoint]) -> tuple[list[str | None], Evaluator]:
    evaluator = Evaluator(None, [], [0], [1], 100)
    notes = []
    for point in points:
        evaluator.points.append(point)
        notes.append(evaluator.overfitting())
    return notes, evaluator


def test_the_overfitting_note_comes_once_when_held_out_loss_rises_and_training_loss_falls():
    notes, evaluator = _judge(_points((0.50, 0.50), (0.40, 0.42), (0.35, 0.45), (0.30, 0.46), (0.25, 0.50)))
    said = [n for n in notes if n]
    assert len(said) == 1 and notes.index(said[0]) == 1 + RISEN_EVALS
    assert "since step 100" in said[0] and "0.4200" in said[0]
    assert evaluator.best_holdout().step == 100


@pytest.mark.parametrize("values", [
    [(0.50, 0.50), (0.40, 0.42), (0.45, 0.45), (0.46, 0.46)],  # both rose: unsettled, not memorising
    [(0.50, 0.50), (0.40, 0.42), (0.35, 0.45), (0.30, 0.41)],  # back below the best
    [(0.50, 0.50), (0.40, 0.42), (0.35, 0.425), (0.30, 0.424)],  # within 2 %: noise
])
def test_no_overfitting_note_without_a_clear_rise(values):
    notes, _ = _judge(_points(*values))
    assert not any(notes)


def test_a_resumed_run_does_not_repeat_the_note():
    lines = [json.dumps(p.to_dict()) for p in _points((0.5, 0.5), (0.4, 0.42), (0.35, 0.45), (0.3, 0.46))]
    evaluator = Evaluator(None, [], [0], [1], 100)
    evaluator.load(lines + ["not json", '{"step": 5}'])
    assert len(evaluator.points) == 4 and evaluator.warned
    evaluator.points.append(EvalPoint(400, 0.25, 0.5, 0.1))
    assert evaluator.overfitting() is None


def test_the_eta_counts_the_evaluations_still_to_come():
    clock = iter([0.0, 0.0, 10.0]).__next__
    progress = Progress(lambda _e: None, 100, torch.device("cpu"), 0, clock=clock, eval_every=10)
    progress.restart_clock(0)
    progress.steps_done(10)  # 1 s a step
    progress.pause_s["eval"] = 2.0
    assert progress.eta_s(10) == pytest.approx(90 + 9 * 2.0)


# ------------------------------------------------------------ a job
def test_a_job_measures_its_evaluation_loss_and_it_falls(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data")
    events = []
    result = train(tiny_config(eval_every=5), data, tmp_path / "job", demo_paths, on_progress=events.append)
    points = _evals(tmp_path / "job")
    assert [p["step"] for p in points] == [0, 5, 10, 15, 20]
    assert all(p["eval_loss"] > 0 and "holdout_loss" not in p for p in points)
    assert points[-1]["eval_loss"] < points[0]["eval_loss"]
    assert result["eval_loss"] == points[-1]["eval_loss"] and "holdout_loss" not in result
    log = (tmp_path / "job" / "log.txt").read_text()
    assert "Step 0: evaluation loss" in log and "Step 20: evaluation loss" in log
    assert events[-1]["evaluation"]["step"] == 20
    # the same images give the same measurements in another run: the curves of two runs compare
    again = train(tiny_config(eval_every=5), data, tmp_path / "again", demo_paths)
    assert _without_time(_evals(tmp_path / "again")) == _without_time(points)
    assert again["eval_loss"] == result["eval_loss"]


def test_measuring_changes_nothing_in_the_training(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data")
    train(tiny_config(eval_every=0, ema_decay=0.9), data, tmp_path / "plain", demo_paths)
    train(tiny_config(eval_every=3, ema_decay=0.9), data, tmp_path / "measured", demo_paths)
    assert not (tmp_path / "plain" / "eval.jsonl").read_text()
    plain = load_file(str(tmp_path / "plain" / "lora" / "toy.safetensors"))
    measured = load_file(str(tmp_path / "measured" / "lora" / "toy.safetensors"))
    assert plain.keys() == measured.keys()
    assert all(torch.equal(plain[k], measured[k]) for k in plain)
    steps = [json.loads(line)["loss"] for line in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(line)["loss"] for line in (tmp_path / "measured" / "metrics.jsonl").read_text().splitlines()]
    assert steps == again


def test_a_resumed_job_measures_as_an_uninterrupted_one(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data")
    config = tiny_config(eval_every=4, holdout_images=1)
    train(config, data, tmp_path / "whole", demo_paths)
    job = tmp_path / "cut"
    first = train(config, data, job, demo_paths, control=StopAfter(job, 13))
    assert first["stopped"] and first["steps"] == 13
    with (job / "eval.jsonl").open("a") as handle:  # measured after the checkpoint it resumes from: redone
        handle.write(json.dumps({"step": 14, "eval_loss": 9.0}) + "\n")
    train(config, data, job, demo_paths)
    assert _without_time(_evals(job)) == _without_time(_evals(tmp_path / "whole"))
    whole = load_file(str(tmp_path / "whole" / "lora" / "toy.safetensors"))
    resumed = load_file(str(job / "lora" / "toy.safetensors"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_held_out_images_are_measured_but_never_trained_on(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data", count=3)
    result = train(tiny_config(eval_every=10, holdout_images=1), data, tmp_path / "job", demo_paths)
    points = _evals(tmp_path / "job")
    assert [p["step"] for p in points] == [0, 10, 20] and all(p["holdout_loss"] > 0 for p in points)
    assert result["holdout_loss"] == points[-1]["holdout_loss"]
    assert result["best_holdout_step"] in (0, 10, 20)
    assert result["best_holdout_loss"] == min(p["holdout_loss"] for p in points)
    log = (tmp_path / "job" / "log.txt").read_text()
    assert "Held out of training to measure how well the LoRA generalises: 1 image(s) (img" in log
    assert "Dataset: 2 image(s)" in log
    with safe_open(str(tmp_path / "job" / "lora" / "toy.safetensors"), "pt") as lora:
        assert lora.metadata()["ss_num_train_images"] == "2"


def test_holding_out_every_image_fails_the_job_with_the_reason(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data", count=2)
    with pytest.raises(TrainingError, match="keep at least one to train on"):
        train(tiny_config(holdout_images=2), data, tmp_path / "job", demo_paths)


def test_the_checkpoint_nearest_the_lowest_held_out_loss_outlives_keep_last(tmp_path):
    lora = {"w": torch.zeros(2)}
    for step in (100, 200, 300, 400, 500):
        ckpt.save_checkpoint(tmp_path, step, lora, {}, {"step": step}, keep_last=2, protect=180)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [200, 400, 500]
    ckpt.save_checkpoint(tmp_path, 600, lora, {}, {"step": 600}, keep_last=2, protect=None)  # no longer the best
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [500, 600]
    assert ckpt.nearest_step([100, 200], 150) == 100 and ckpt.nearest_step([], 5) is None


def test_by_default_it_measures_at_every_checkpoint_and_out_of_memory_skips_one(tmp_path, demo_paths, monkeypatch):
    data = make_dataset(tmp_path / "data")
    real, calls = Evaluator._total, []

    def total(self, indices):
        calls.append(len(calls))
        if len(calls) == 2:  # the evaluation at the first checkpoint
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, indices)

    monkeypatch.setattr(Evaluator, "_total", total)
    events = []
    result = train(tiny_config(), data, tmp_path / "job", demo_paths, on_progress=events.append)  # save_every 10
    assert [p["step"] for p in _evals(tmp_path / "job")] == [0, 20]
    assert result["steps"] == 20 and result["eval_loss"] > 0
    log = (tmp_path / "job" / "log.txt").read_text()
    assert "The evaluation at step 10 was skipped: out of memory (training goes on" in log
    assert any("evaluation at step 10 was skipped" in n for n in events[-1].get("notices", []))


def _scripted(monkeypatch, held_by_step: dict[int, float]):
    """Evaluations that say what the test needs: the training images' loss falls, the held-out one follows
    `held_by_step`."""
    def measure(self, step):
        point = EvalPoint(step, 1.0 / (step + 1), held_by_step.get(step, 0.5), 0.0)
        self.points.append(point)
        return point

    monkeypatch.setattr(Evaluator, "measure", measure)


def test_stop_when_overfitting_ends_the_job_at_the_best_checkpoint(tmp_path, demo_paths, monkeypatch):
    _scripted(monkeypatch, {0: 0.50, 5: 0.45, 10: 0.40, 15: 0.45, 20: 0.47})
    data = make_dataset(tmp_path / "data")
    job = tmp_path / "job"
    config = tiny_config(steps=40, save_every=5, keep_last=10, holdout_images=1, stop_when_overfitting=True)
    result = train(config, data, job, demo_paths)
    assert not result["stopped"] and result["steps"] == 10 and result["stopped_early_at"] == 20
    assert result["best_holdout_step"] == 10
    kept = sorted(p.name for p in (job / "checkpoints").iterdir())
    assert kept == ["step_000005", "step_000010"]  # the memorising ones are gone
    assert [s for s, _ in ckpt.list_checkpoints(job)] == [10]  # whole, to train further from
    final = load_file(str(job / "lora" / "toy.safetensors"))
    at_best = load_file(str(job / "checkpoints" / "step_000010" / "lora.safetensors"))
    assert all(torch.equal(final[k], at_best[k]) for k in final)
    log = (job / "log.txt").read_text()
    assert "Stopped early at step 20 (stop_when_overfitting): the LoRA is the checkpoint at step 10" in log
    assert "memorise its images" in log
    with safe_open(str(job / "lora" / "toy.safetensors"), "pt") as lora:
        assert lora.metadata()["steps"] == "10"


def test_without_the_option_the_job_only_says_so(tmp_path, demo_paths, monkeypatch):
    _scripted(monkeypatch, {0: 0.50, 5: 0.45, 10: 0.40, 15: 0.45, 20: 0.47})
    data = make_dataset(tmp_path / "data")
    result = train(tiny_config(steps=25, save_every=5, holdout_images=1), data, tmp_path / "job", demo_paths)
    assert result["steps"] == 25 and "stopped_early_at" not in result
    assert "memorise its images" in (tmp_path / "job" / "log.txt").read_text()


def test_stop_when_overfitting_without_held_out_images_says_it_watches_nothing(tmp_path, demo_paths):
    data = make_dataset(tmp_path / "data")
    result = train(tiny_config(steps=4, stop_when_overfitting=True), data, tmp_path / "job", demo_paths)
    assert result["steps"] == 4
    assert "no image is held out (holdout_images is 0)" in (tmp_path / "job" / "log.txt").read_text()


def test_keep_last_counts_the_checkpoints_an_ended_run_kept_the_lora_of(tmp_path):
    """Train more steps after a finished run: the earlier checkpoints kept only their LoRA file, and still count."""
    from trainer.step_dirs import free_training_states, lora_checkpoints

    lora = {"w": torch.zeros(2)}
    for step in (100, 200, 300):
        ckpt.save_checkpoint(tmp_path, step, lora, {}, {"step": step}, keep_last=3)
    assert free_training_states(tmp_path)[0] == 2  # the run ended: 100 and 200 keep their LoRA only
    for step in (400, 500):
        ckpt.save_checkpoint(tmp_path, step, lora, {}, {"step": step}, keep_last=3)
    assert [s for s, _ in lora_checkpoints(tmp_path)] == [300, 400, 500]


def test_the_eta_counts_evaluations_from_the_first_step_on(tmp_path, demo_paths, monkeypatch):
    """The evaluation before the first step measures how long one takes: the ETA counts every evaluation to come
    from then on, instead of rising at the second one (a run seemed to take longer as it went)."""
    expected = []
    real = Progress.expect_pause
    monkeypatch.setattr(Progress, "expect_pause",
                        lambda self, kind, seconds: expected.append((kind, seconds)) or real(self, kind, seconds))
    train(tiny_config(steps=4, eval_every=2), make_dataset(tmp_path / "data"), tmp_path / "job", demo_paths)
    measured = [seconds for kind, seconds in expected if kind == "eval"]
    assert len(measured) == 1 and measured[0] > 0
