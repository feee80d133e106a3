"""The previews of a training run: the base model's before the first step, the LoRA's every `sample_every`
steps, and what happens when they do not fit in memory (never the end of the run)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from trainer.engine.errors import is_oom
from trainer.engine.sampling import previews


class RunPreviews:
    """Mixed into TrainingRun, whose config, loop, sampler, transformer, progress, log and job folder it uses."""

    def sample(self, step: int) -> Path | None:
        """Preview images for `step`; None (and training goes on) when they do not fit in memory."""
        self.flush()
        started = time.monotonic()
        self.progress.emit("sampling", step, message=f"Rendering previews at step {step}", force=True)
        before, base_before = sum(self.sampler.renders.values()), self.sampler.renders["base"]
        path = self._render_previews(step)
        self.progress.paused("sample", time.monotonic() - started, step)
        self.last_sampled = step  # tried: the end of the run does not try the same step again
        if path is None:
            return None
        rendered = sum(self.sampler.renders.values()) - before
        base = self.sampler.renders["base"] > base_before  # only when they could not be made before the start
        self.log(f"Previews saved: samples/{path.name} ({rendered} images: LoRA on, LoRA without the trigger word"
                 f"{', and the base model once per job' if base else ''}).")
        return path

    def preview_base(self) -> None:
        """Before the first step: the base model's render of every preview prompt, so the job page shows
        what the prompts look like without the LoRA within seconds (rendered once per job; the preview
        steps reuse them). Running out of memory here only postpones them to the first preview step."""
        if not self.config.sample_every or not self.config.sample_prompts:
            return
        before, started = self.sampler.renders["base"], time.monotonic()
        self.progress.emit("sampling", self.loop.state.step, message="Rendering the base model's previews",
                           force=True)
        try:
            self.sampler.render_base(self.transformer, self.job_dir)
        except Exception as exc:
            if not is_oom(exc):
                raise
            self.log("Out of memory while rendering the base model's previews; they come with the first preview step.")
            if self.dev.type == "cuda":
                torch.cuda.empty_cache()
        if self.sampler.renders["base"] > before:
            self.log(f"Base model previews saved: samples/base ({self.sampler.renders['base'] - before} images).")
            # a preview step renders each prompt with the LoRA, and again without the trigger word: the ETA's guess
            per_step = 2 if self.config.trigger_word else 1
            self.progress.expect_pause("sample", (time.monotonic() - started) * per_step)
        self.progress.restart_clock(self.loop.state.step)  # not training time

    def _render_previews(self, step: int) -> Path | None:
        """Out of memory while rendering: once more with the VAE decoding in tiles, then skip this step's
        previews with a log line. A preview is never worth the run."""
        while True:
            try:
                with self.loop.averaged():
                    return self.sampler.save(self.transformer, self.job_dir, step)
            except Exception as exc:
                if not is_oom(exc):
                    raise
            if self.dev.type == "cuda":
                torch.cuda.empty_cache()
            if self.sampler.lighten():
                self.log(f"Out of memory while rendering previews at step {step}; the VAE now decodes in tiles.")
                continue
            largest = max(previews(self.config), key=lambda prompt: prompt.area)
            message = (f"Previews at step {step} skipped: out of memory while rendering {largest.width}x"
                       f"{largest.height}; training goes on (lower sample_width and sample_height, or a prompt's "
                       "--w and --h, for previews).")
            self.log(message)
            self.progress.notice(message, step)
            return None
