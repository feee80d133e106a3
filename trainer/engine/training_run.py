"""train(): one job from exported dataset to LoRA file, resuming from the newest checkpoint."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import torch

from studio.atomic import atomic_write_json
from trainer.engine import cache as zcache
from trainer.engine import checkpoints as ckpt
from trainer.engine import compile_blocks, networks, speed_setup
from trainer.engine import grad_checkpointing as gc_plan
from trainer.engine import model as zmodel
from trainer.engine.control import StopRequested, TrainingControl
from trainer.engine.data import (
    BatchPlan,
    as_sources,
    build_samples,
    dataset_hash,
    dataset_name,
    read_datasets,
    source_triggers,
    sources_label,
)
from trainer.engine.device_data import DeviceData
from trainer.engine.errors import TrainingError, is_oom, one_line, oom_error
from trainer.engine.evaluation import JobEvaluation, split_holdout
from trainer.engine.loop import TrainingLoop
from trainer.engine.lora_metadata import lora_metadata
from trainer.engine.preservation import OutputPreservation
from trainer.engine.progress import MetricsWriter, Progress, last_losses, reached_step, resumed_notice
from trainer.engine.run_end import RunEnd
from trainer.engine.run_previews import RunPreviews
from trainer.engine.sampling import Sampler, all_sample_texts
from trainer.evaluation_set import eval_interval
from trainer.job_log import RunLog
from trainer.lora_file import START_LORA_FILE

COMPILING = ("Compiling the transformer's blocks for this GPU: the first steps take about a minute more (a restarted "
             "job reuses the compiled kernels).")


def _as_config(config):
    if isinstance(config, dict):
        from trainer.recipes import get_recipe

        return get_recipe("zimage-turbo").config_from_dict(config)
    return config


def default_cache_dir(job_dir: Path) -> Path:
    """STUDIO_ROOT/trainer/cache for jobs in STUDIO_ROOT/trainer/jobs/<id>, else a folder in the job."""
    if job_dir.parent.name == "jobs" and job_dir.parent.parent.name == "trainer":
        return job_dir.parent.parent / "cache"
    return job_dir / "cache"


def pick_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(config, dataset_dir, job_dir: Path, model_paths, control: TrainingControl | None = None,
          on_progress: Callable[[dict], None] | None = None, device: str | None = None,
          cache_dir: Path | None = None) -> dict:
    """Train (or resume) one LoRA job on `dataset_dir` (a folder, or a list of DatasetSource or
    (folder, repeats) for several datasets). Returns {"lora_path", "steps", "final_loss", "seconds", ...};
    "stopped" is True when the control asked to stop (a checkpoint for that step is saved first)."""
    config = _as_config(config)
    job_dir, dataset_dir = Path(job_dir), as_sources(dataset_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    control = control or TrainingControl(job_dir)
    dev = pick_device(device)
    progress = Progress(on_progress or (lambda _event: None), config.steps, dev, 0, config.sample_every,
                        config.save_every, eval_every=eval_interval(config))
    log = RunLog(job_dir / "log.txt")
    try:
        return _train(config, dataset_dir, job_dir, model_paths, control, progress, dev,
                      Path(cache_dir) if cache_dir else default_cache_dir(job_dir), log)
    except TrainingError as exc:
        log(f"Failed: {exc.message}")
        raise
    except Exception as exc:
        if is_oom(exc):
            error = oom_error(config, progress.step + 1, dev.type == "cuda")
            log(f"Failed: {error.message}")
            raise error from exc
        log(f"Failed with an internal error: {type(exc).__name__}: {exc}")
        raise


def _train(config, dataset_dir, job_dir, paths, control, progress, dev, cache_dir, log) -> dict:
    run = TrainingRun(config, dataset_dir, job_dir, paths, control, progress, dev, cache_dir, log)
    try:
        run.prepare()
    except StopRequested:  # while it encoded the images or loaded the models: nothing trained, nothing to save
        return run.stopped_before_training()
    stopped = False
    try:
        try:
            run.preview_base()
            run.evaluate_base()
            while run.loop.state.step < config.steps:
                if not run.run_step():
                    stopped = run.evaluation.stop_step() is None  # else the job ends early, and completes
                    break
        except StopRequested:  # while previews rendered or an evaluation ran: the steps trained are kept
            if run.loop.state.step == run.start:
                return run.stopped_before_training()
            stopped = True
        return run.finish(stopped)
    finally:
        run.close()


class TrainingRun(RunPreviews, RunEnd):
    """The pieces of one job, so that train() and the step benchmark run exactly the same code."""

    def __init__(self, config, dataset_dir, job_dir: Path, paths, control: TrainingControl,
                 progress: Progress, dev: torch.device, cache_dir: Path, log: Callable[[str], None]):
        self.config, self.job_dir, self.paths = config, job_dir, paths
        self.sources = as_sources(dataset_dir)
        self.control, self.progress, self.dev, self.cache_dir, self.log = control, progress, dev, cache_dir, log
        self.autocast_dtype = torch.bfloat16 if dev.type == "cuda" and config.mixed_precision == "bf16" else None
        self.model_dtype = torch.bfloat16 if self.autocast_dtype is not None else torch.float32
        self.started = time.monotonic()
        self.last_saved = self.last_sampled = -1

    # ------------------------------------------------------------ setup
    def prepare(self) -> None:
        config, log, progress, dev = self.config, self.log, self.progress, self.dev
        atomic_write_json(self.job_dir / "config.json", config.to_dict())
        resume = ckpt.latest_checkpoint(self.job_dir)
        log(f"Job {config.name}: {'resuming from step ' + str(resume[0]) if resume else 'starting'} on {dev.type} "
            f"({'bf16' if self.autocast_dtype else 'float32'}), {config.steps} steps, dataset "
            f"{sources_label(self.sources)}.")
        if resume:  # the loss stays on the page while the run loads again
            progress.loss, progress.smooth_loss = last_losses(self.job_dir / "metrics.jsonl", resume[0])
            behind = resumed_notice(resume[0], reached_step(self.job_dir / "metrics.jsonl"))
            if behind:  # why the progress went back (sent with the next report)
                progress.notices.append(behind)
                log(behind)
        progress.emit("loading", resume[0] if resume else 0, message="Checking model files and dataset", force=True)

        zmodel.check_model_files(self.paths)
        items, held = split_holdout(read_datasets(self.sources, config, log), getattr(config, "holdout_images", 0))
        if held:
            names = ", ".join(sorted({item.path.name for item in held}))
            log(f"Held out of training to measure how well the LoRA generalises: {len(held)} image(s) ({names}).")
        self.samples = build_samples(items, config.resolutions, config.flip_horizontal)
        held_samples = build_samples(held, config.resolutions)
        buckets = sorted({s.bucket for s in self.samples})
        mirrored = ", each also mirrored" if config.flip_horizontal else ""
        log(f"Dataset: {len(items)} image(s), {len(self.samples)} training example(s){mirrored} in {len(buckets)} "
            "bucket(s): " + ", ".join(f"{w}x{h}" for w, h in buckets))
        self.triggers = triggers = source_triggers(self.sources, config)
        if len(set(triggers)) > 1:
            log("Trigger words: " + ", ".join(f"{word or '(none)'} ({dataset_name(source.folder)})"
                                              for source, word in zip(self.sources, triggers, strict=True)) + ".")
        if any(item.repeats != 1 for item in items):
            seen = sum(item.repeats for item in items)
            log(f"With repeats, an epoch trains on {seen} image(s): " + ", ".join(
                f"{dataset_name(s.folder)} x{s.repeats}" for s in self.sources) + ".")

        measured = self.samples + held_samples  # the training examples first: the batch plan's indices
        self.preservation = OutputPreservation.for_run(config, self.samples, triggers, log)
        texts = [s.item.caption for s in measured] + all_sample_texts(config) + [""]
        texts += self.preservation.captions() if self.preservation else []

        def report(kind: str, done: int, total: int) -> None:
            self.control.check()  # a big dataset encodes for minutes: a stop ends it at the next image
            progress.emit("caching", 0, message=f"Encoding {kind}: {done}/{total}", force=done == total)

        progress.emit("caching", 0, message="Encoding images and captions", force=True)
        alpha_mask = bool(getattr(config, "alpha_mask", False))
        self.cached = zcache.prepare(measured, texts, self.paths, dev, self.model_dtype, self.cache_dir, report,
                                     alpha_mask)
        if alpha_mask:
            masked = len({s.item.path for s, m in zip(measured, self.cached.masks, strict=True) if m is not None})
            log(f"Alpha mask: {masked} of {len(items) + len(held)} image(s) have transparency and train on their "
                "visible part only." if masked
                else "Alpha mask is on, but no image has transparency: every image trains whole.")
        log(f"Cache ready in {self.cache_dir} (VAE encoder calls {self.cached.encoder_calls['vae_encoder']}, "
            f"text encoder calls {self.cached.encoder_calls['text_encoder']}).")

        self.control.check()
        progress.emit("loading", 0, message="Loading the transformer", force=True)
        self.transformer = transformer = zmodel.load_transformer(self.paths, dev, self.model_dtype)
        self.adapter = zmodel.LoraDelta.load(self.paths.training_adapter)
        zmodel.merge_adapter(transformer, self.adapter)  # before quantizing: merged at full precision
        params, trained = networks.add_network(transformer, config)
        log(f"{trained}: {sum(p.numel() for p in params):,} trainable parameters; training adapter merged.")
        if getattr(config, "init_lora", "") and not resume:
            self._start_from(transformer)
        data = DeviceData(self.cached, dev, self.model_dtype)
        self.speed = speed_setup.configure(config, transformer, params, dev, self.samples, self.cached,
                                           self.cache_dir, self.model_dtype, log, data, self.autocast_dtype)
        transformer.train()

        plan = BatchPlan(self.samples, config.batch_size, config.seed)
        self.loop = TrainingLoop(config, transformer, params, self.cached, self.samples, plan, dev,
                                 self.autocast_dtype, attention=self.speed.attention, data=data,
                                 preservation=self.preservation)
        self.loop.setup_optimizer(log)
        if resume:
            state = ckpt.load_state(resume[1])
            self.loop.load_state_dict(state)
            ckpt.restore_rng(state["rng"])
            self.last_saved = resume[0]
        self.start = self.loop.state.step
        progress.start_step = self.start
        progress.restart_clock(self.start)
        self.sampler = Sampler(config, self.paths, dev, self.cached.embeddings, self.adapter, self.autocast_dtype)
        self.sampler.stop_check = self.control.check
        self.preserved = self.preservation.word if self.preservation else ""
        self.metadata = lora_metadata(config, self.paths, dataset_hash(items), items, self.sources, triggers,
                                      self.preserved, type(self.loop.optimizer))
        self.metrics = MetricsWriter(self.job_dir / "metrics.jsonl", self.start)
        self.evaluation = JobEvaluation(self.loop, measured, len(self.samples), self.job_dir, self.start, log,
                                        progress)
        self.evaluation.evaluator.check = self.control.check

    def metadata_at(self, step: int) -> dict[str, str]:
        """The LoRA file's metadata once `step` steps are trained."""
        return {**self.metadata, "steps": str(step), "ss_steps": str(step)}

    def close(self) -> None:
        self.metrics.close()
        self.evaluation.close()

    def _start_from(self, transformer) -> None:
        """The trainable LoRA starts as the LoRA the job names (staged in its folder when it was claimed)."""
        name, path = self.config.init_lora, self.job_dir / START_LORA_FILE
        if not path.is_file():
            raise TrainingError(f"The LoRA {name} to start from is not in the job folder ({path.name}): start the "
                                "job again from the form, with the LoRA in the library.")
        count = networks.start_from_file(transformer, self.config, path, f"The LoRA {name} to start from")
        self.log(f"Starting from the LoRA {name} ({count} modules) instead of from zero.")

    # ------------------------------------------------------------ one step of the job
    def run_step(self) -> bool:
        """One optimizer step plus its bookkeeping; False (and no step) when a stop was requested."""
        config, loop = self.config, self.loop
        if self.control.should_stop() or self.evaluation.stop_step() is not None:
            return False
        requests = self.control.take_requests()
        if self.speed.compiled and loop.state.step == self.start:  # a minute with no step: say why
            self.progress.emit("training", self.start, message=COMPILING, force=True)
        self.step()
        step = loop.state.step
        save = step % config.save_every == 0 or "save" in requests
        sample = (config.sample_every and step % config.sample_every == 0) or "sample" in requests
        if save or sample or step % loop.log_every == 0 or step in (self.start + 1, config.steps):
            self.flush(force=step in (self.start + 1, config.steps))
        if save:
            self.save(step)
        if sample:
            self.sample(step)
        if self.evaluation.due(step):
            self.flush()
            self.evaluation.run(step)
        return True

    def evaluate_base(self) -> None:
        """Before the first step of a new job: the evaluation loss before any training, where the curve starts."""
        if self.loop.state.step == 0 and self.evaluation.due(0):
            self.evaluation.run(0)
            self.progress.restart_clock(0)  # not training time

    def step(self) -> None:
        """One optimizer step. When it runs out of memory, every block recomputes its activations from then
        on and the same step runs again (same batch, same noise): a plan that was too optimistic, or a
        fragmented GPU, costs a notice instead of the run. With nothing left to recompute, the run fails with
        advice. When compiled blocks fail (a backward graph is compiled at the first backward pass), they run
        uncompiled from then on and the step runs again."""
        loop = self.loop
        while True:
            generator = loop.generator.get_state()
            try:
                loop.step()
                return
            except Exception as exc:
                failed_at = loop.state.step + 1
                if self.speed.compiled and compile_blocks.is_compile_error(exc):
                    change, said = self._stop_compiling, (f"torch.compile failed at step {failed_at} "
                                                          f"({one_line(exc, 200)}); the blocks run uncompiled from "
                                                          "now on (slower steps, same results)")
                elif not is_oom(exc):
                    raise
                else:
                    lighter = gc_plan.lighter(self.speed.checkpointing, not self.speed.compiled,
                                              f"out of memory at step {failed_at}")
                    if lighter is None:
                        raise oom_error(self.config, failed_at, self.dev.type == "cuda", recomputing_all=True) from exc
                    change = functools.partial(self._switch_plan, lighter[0])
                    said = f"Out of memory at step {failed_at}; {lighter[1]}"
            # out of the except block: the failed step's tensors went with its traceback
            loop.generator.set_state(generator)
            self._run_again(change, said)

    def _run_again(self, change: Callable[[], None], said: str) -> None:
        """After a failed step: its gradients and timing dropped, `change` made, `said` told in the log and on the
        job page (the ETA takes the new rate at once); the same step then runs again."""
        loop = self.loop
        loop.optimizer.zero_grad(set_to_none=True)
        loop.timer.drop_open_step()
        change()
        message = f"{said} and the step runs again."
        self.log(message)
        self.progress.notice(message, loop.state.step)
        self.progress.rate_changed(loop.state.step)

    def _stop_compiling(self) -> None:
        compile_blocks.run_uncompiled()
        self.speed.compiled = False

    def _switch_plan(self, plan) -> None:
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()
        self.speed.checkpointing = plan
        gc_plan.apply(self.transformer, plan)

    def flush(self, force: bool = False) -> None:
        """Read the queued steps back from the device: metrics lines, NaN notes, progress and timings."""
        records = self.loop.flush()
        if not records:
            return
        timing = self.loop.timer.collect()
        lines = []
        for record in records:
            if record.loss is None:
                self.log(f"Step {record.step}: the loss was NaN or infinite; the step was skipped.")
            lines.append({"step": record.step, "loss": record.loss, "smooth_loss": record.smooth_loss,
                          "lr": record.lr, "time": round(record.time, 3)})
        if timing:
            lines[-1]["timing"] = timing
        self.metrics.write_many(lines)
        last = records[-1]
        self.progress.steps_done(last.step)
        self.progress.emit("training", last.step, last.loss, last.smooth_loss, force=force, timing=timing)

    def save(self, step: int) -> None:
        self.flush()
        started = time.monotonic()
        self.progress.emit("saving", step, message=f"Saving checkpoint at step {step}", force=True)
        state = self.loop.state_dict()
        state["rng"] = ckpt.rng_state()
        with self.loop.averaged():  # the file holds what the job shows (the average with ema_decay)
            lora = networks.file_tensors(self.transformer, self.config)
        best = self.evaluation.evaluator.best_holdout()
        path = ckpt.save_checkpoint(self.job_dir, step, lora, self.metadata_at(step), state,
                                    self.config.keep_last, best.step if best else None)
        self.last_saved = step
        self.log(f"Checkpoint saved: {path.name}.")
        self.progress.paused("save", time.monotonic() - started, step)
