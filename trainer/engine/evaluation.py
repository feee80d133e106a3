"""Evaluation loss: a few fixed examples, measured at fixed noise levels with fixed noise every `eval_every` steps.

A training step's loss swings with the noise level it happened to draw, so the step loss says little about
whether the LoRA still learns. The evaluation loss measures the same images, at the same noise levels with
the same noise, every time: a curve without that noise, that falls while the LoRA learns and flattens when
it has learnt. The examples and their noise depend on the images' content only (not the seed or the file
order), so two runs on the same images are measured alike and their curves compare.

With `holdout_images`, that many images are kept out of training and measured the same way. When their
loss rises while the training images' keeps falling, the LoRA is memorising its images rather than learning
what they share (overfitting): the run says so once, with the step where the held-out loss was lowest.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

import torch

from trainer.engine.data import ImageItem, Sample
from trainer.engine.errors import TrainingError, is_oom
from trainer.evaluation_set import EVAL_FILE, EVAL_IMAGES, EVAL_SIGMAS, HOLDOUT_MEASURED, eval_interval

NOISE_SEED = 20_251_201
RISE = 1.02  # a held-out loss this far above its lowest counts as risen ...
RISEN_EVALS = 2  # ... in this many evaluations in a row


def _rank(sha256: str) -> str:
    """A stable, content-only order that does not follow the file names."""
    return hashlib.sha256(f"eval\0{sha256}".encode()).hexdigest()


def split_holdout(items: list[ImageItem], count: int) -> tuple[list[ImageItem], list[ImageItem]]:
    """(training items, held-out items): the `count` distinct images first in a content-only order, so the same
    images are held out whatever the seed; every copy of a held-out image is held out with it."""
    if count <= 0:
        return items, []
    distinct = sorted({item.sha256 for item in items}, key=_rank)
    if count >= len(distinct):
        raise TrainingError(f"holdout_images is {count}, but the dataset has {len(distinct)} distinct image(s): "
                            "keep at least one to train on (lower holdout_images, or 0 to hold none out).")
    chosen = set(distinct[:count])
    return [i for i in items if i.sha256 not in chosen], [i for i in items if i.sha256 in chosen]


def pick_examples(samples: list[Sample], limit: int, offset: int = 0) -> list[int]:
    """Indices (plus `offset`) of at most `limit` examples: one per distinct image, at its largest bucket and
    not mirrored, the images first in the content-only order."""
    best: dict[str, int] = {}
    for index, sample in enumerate(samples):
        if sample.flip:
            continue
        kept = best.get(sample.item.sha256)
        area = sample.bucket[0] * sample.bucket[1]
        if kept is None or area > samples[kept].bucket[0] * samples[kept].bucket[1]:
            best[sample.item.sha256] = index
    ranked = sorted(best, key=_rank)[:limit]
    return [best[sha] + offset for sha in ranked]


@dataclass
class EvalPoint:
    step: int
    eval_loss: float
    holdout_loss: float | None
    seconds: float

    def to_dict(self) -> dict:
        out = {"step": self.step, "eval_loss": round(self.eval_loss, 6), "seconds": round(self.seconds, 3)}
        if self.holdout_loss is not None:
            out["holdout_loss"] = round(self.holdout_loss, 6)
        return out


class Evaluator:
    """Measures `examples` (and `holdout`) with the loop's model and loss; `measure()` is one evaluation."""

    def __init__(self, loop, samples: list[Sample], examples: list[int], holdout: list[int], every: int):
        self.loop, self.samples = loop, samples
        self.examples, self.holdout, self.every = examples, holdout, every
        self.check = None  # called between examples: a stop asked meanwhile ends the evaluation (the training run's)
        self.points: list[EvalPoint] = []
        self.warned = False
        self.overfit_best: EvalPoint | None = None  # the lowest held-out point when the overfitting note came
        self._noise: dict[int, torch.Tensor] = {}

    def due(self, step: int, last_step: int) -> bool:
        return bool(self.every) and bool(self.examples) and (step % self.every == 0 or step == last_step)

    def _noise_for(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """The example's own noise, from its content: the same in every evaluation and every run."""
        if index not in self._noise:
            sample = self.samples[index]
            key = f"{sample.item.sha256}\0{sample.bucket[0]}x{sample.bucket[1]}"
            seed = NOISE_SEED + int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)
            noise = torch.randn(like.shape, generator=torch.Generator("cpu").manual_seed(seed))
            self._noise[index] = self.loop.data.to_device(noise)
        return self._noise[index]

    def _total(self, indices: list[int]) -> torch.Tensor:
        """Sum of the per-example losses over `indices` x EVAL_SIGMAS, kept on the device."""
        loop, data = self.loop, self.loop.data
        per_call = max(1, loop.config.batch_size)
        parts = []
        for index in indices:
            if self.check is not None:
                self.check()  # a stop asked meanwhile ends it here (trainer.engine.control.StopRequested)
            x0 = data.latent(index)
            noise = self._noise_for(index, x0)
            embed = data.embedding(self.samples[index].item.caption)
            mask = data.mask(index) if data.has_masks else None
            for start in range(0, len(EVAL_SIGMAS), per_call):
                sigmas = EVAL_SIGMAS[start : start + per_call]
                n = len(sigmas)
                sigma = data.to_device(torch.tensor(sigmas, dtype=torch.float32))
                losses = loop.flow_loss(x0.expand(n, *x0.shape), noise.expand(n, *noise.shape), sigma, [embed] * n,
                                        [mask] * n if mask is not None else None)
                parts.append(losses.sum())
        return torch.stack(parts).sum()

    def measure(self, step: int) -> EvalPoint:
        """One evaluation at `step` (the LoRA as it would be saved: its average with ema_decay)."""
        from trainer.engine.compile_blocks import eager

        started = time.monotonic()
        loop = self.loop
        with torch.no_grad(), loop.averaged(), loop.attention(), eager():
            train_sum = self._total(self.examples)
            held_sum = self._total(self.holdout) if self.holdout else None
            values = torch.stack([train_sum, held_sum if held_sum is not None else train_sum]).cpu().tolist()
        per = len(EVAL_SIGMAS)
        point = EvalPoint(step, values[0] / (per * len(self.examples)),
                          values[1] / (per * len(self.holdout)) if self.holdout else None,
                          time.monotonic() - started)
        self.points.append(point)
        return point

    def overfitting(self) -> str | None:
        """Once per run: a sentence when the held-out loss has risen above its lowest for RISEN_EVALS evaluations
        in a row while the training images' loss went on falling."""
        held = self._held()
        if self.warned or len(held) < RISEN_EVALS + 1:
            return None
        best = min(held, key=lambda p: p.holdout_loss)
        recent = held[-RISEN_EVALS:]
        if best in recent or any(p.holdout_loss < best.holdout_loss * RISE for p in recent):
            return None
        if not recent[-1].eval_loss < best.eval_loss:
            return None  # both rose: the run is unsettled, not memorising
        self.warned, self.overfit_best = True, best
        return (f"The held-out images' loss has risen since step {best.step} ({best.holdout_loss:.4f} to "
                f"{recent[-1].holdout_loss:.4f}) while the training images' keeps falling: the LoRA is starting to "
                f"memorise its images. The checkpoint nearest step {best.step} may generalise better: the job keeps it "
                "(marked in its checkpoint list); compare it in Try the LoRA.")

    def _held(self) -> list[EvalPoint]:
        return [p for p in self.points if p.holdout_loss is not None and math.isfinite(p.holdout_loss)]

    def best_holdout(self) -> EvalPoint | None:
        held = self._held()
        return min(held, key=lambda p: p.holdout_loss) if held else None

    def load(self, lines: list[str]) -> None:
        """The evaluations a resumed run made before its checkpoint (eval.jsonl): the overfitting check goes on
        from them, and a note already given is not given again."""
        for line in lines:
            try:
                record = json.loads(line)
                held = record.get("holdout_loss")
                point = EvalPoint(int(record["step"]), float(record["eval_loss"]),
                                  None if held is None else float(held), float(record.get("seconds", 0)))
            except (ValueError, KeyError, TypeError):
                continue
            self.points.append(point)
            self.overfitting()


class JobEvaluation:
    """The evaluation of one training job: the examples it measures, eval.jsonl (cut back to the checkpoint a
    resumed run starts from, like metrics.jsonl), a log line per evaluation, the latest figures in the progress
    reports, and the overfitting note."""

    def __init__(self, loop, samples: list[Sample], trained: int, job_dir, start_step: int, log, progress):
        from trainer.engine.progress import MetricsWriter

        config = loop.config
        self.total, self.log, self.progress = config.steps, log, progress
        self.evaluator = Evaluator(loop, samples, pick_examples(samples[:trained], EVAL_IMAGES),
                                   pick_examples(samples[trained:], HOLDOUT_MEASURED, trained),
                                   eval_interval(config))
        self.stop_early = bool(getattr(config, "stop_when_overfitting", False))
        if self.stop_early and not self.evaluator.holdout:
            log("stop_when_overfitting is on, but no image is held out (holdout_images is 0): the job runs all its "
                "steps.")
        self.writer = MetricsWriter(job_dir / EVAL_FILE, start_step)
        self.evaluator.load((job_dir / EVAL_FILE).read_text("utf-8").splitlines())
        if self.evaluator.points:
            progress.evaluation = self.evaluator.points[-1].to_dict()

    def due(self, step: int) -> bool:
        return self.evaluator.due(step, self.total)

    def run(self, step: int) -> EvalPoint | None:
        """One evaluation; None (and training goes on) when it does not fit in memory: a measurement is never worth
        the run."""
        try:
            point = self.evaluator.measure(step)
        except Exception as exc:
            if not is_oom(exc):
                raise
            point = None
        if point is None:  # out of the except block: the failed evaluation's tensors went with its traceback
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            message = (f"The evaluation at step {step} was skipped: out of memory (training goes on; eval_every 0 "
                       "turns evaluations off).")
            self.log(message)
            self.progress.notice(message, step)
            return None
        record = point.to_dict()
        self.writer.write(record)
        held = f", held-out images {point.holdout_loss:.4f}" if point.holdout_loss is not None else ""
        self.log(f"Step {step}: evaluation loss {point.eval_loss:.4f}{held} (measured in {point.seconds:.1f} s).")
        self.progress.evaluation = record
        if step:
            self.progress.paused("eval", point.seconds, step)
        else:  # before the first step: the ETA counts every evaluation to come from the start, not from the second
            self.progress.expect_pause("eval", point.seconds)
        warning = self.evaluator.overfitting()
        if warning:
            self.log(warning)
            self.progress.notice(warning, step)
        return point

    def stop_step(self) -> int | None:
        """With stop_when_overfitting, once the overfitting note came: the step of the lowest held-out loss."""
        best = self.evaluator.overfit_best
        return best.step if self.stop_early and best is not None else None

    def rewind(self, loop, job_dir) -> int | None:
        """stop_when_overfitting: the loop goes back to the checkpoint nearest the lowest held-out loss, and the
        checkpoints after it (the memorising LoRA) are deleted. The step gone back to; None without a checkpoint."""
        import shutil

        from trainer.engine.checkpoints import list_checkpoints, load_state, nearest_step

        trained_to, best = loop.state.step, self.stop_step()
        found = list_checkpoints(job_dir)
        step = nearest_step([s for s, _ in found], best)
        if step is None:
            self.log(f"Stopping early at step {trained_to}, but no checkpoint is there to go back to: the LoRA is "
                     "this step's.")
            return None
        loop.load_state_dict(load_state(dict(found)[step]))
        later = [folder for s, folder in found if s > step]
        for folder in later:
            shutil.rmtree(folder, ignore_errors=True)
        dropped = f"; the {len(later)} checkpoint(s) after it are deleted" if later else ""
        self.log(f"Stopped early at step {trained_to} (stop_when_overfitting): the LoRA is the checkpoint at step "
                 f"{step}, nearest the held-out images' lowest loss (step {best}){dropped}.")
        return step

    def result(self) -> dict:
        """The last evaluation's figures for the job's result; with held-out images, where theirs was lowest."""
        points = self.evaluator.points
        if not points:
            return {}
        out = {"eval_loss": round(points[-1].eval_loss, 6)}
        best = self.evaluator.best_holdout()
        if best is not None and points[-1].holdout_loss is not None:
            out.update(holdout_loss=round(points[-1].holdout_loss, 6), best_holdout_step=best.step,
                       best_holdout_loss=round(best.holdout_loss, 6))
        return out

    def close(self) -> None:
        self.writer.close()
