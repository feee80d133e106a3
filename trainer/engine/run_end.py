"""How a training run ends: its final LoRA, previews and proof files when it trained to the end (or stopped early at
the held-out images' best), its last checkpoint when it was stopped, and nothing new when it was stopped before it
trained a step."""

from __future__ import annotations

import math
import time

from studio.model_status import format_bytes
from trainer import leak
from trainer.engine import checkpoints as ckpt
from trainer.engine import networks, proof
from trainer.engine.control import StopRequested
from trainer.engine.data import sources_label
from trainer.step_dirs import free_training_states


class RunEnd:
    """TrainingRun's end (a mixin: the run's own attributes)."""

    def stopped_before_training(self) -> dict:
        """The result of a run stopped before it trained a step (while it prepared, or rendered the base model's
        previews): the last checkpoint stays the job's (none for a new job: Resume starts it from the beginning)."""
        resume = ckpt.latest_checkpoint(self.job_dir)
        step = resume[0] if resume else 0
        self.log(f"Stopped before training {'went on' if resume else 'began'}; "
                 + (f"resume continues from the checkpoint at step {step}." if resume else "resume starts it again."))
        self.progress.emit("done", step, message="Stopped", force=True)
        lora = ckpt.checkpoint_dir(self.job_dir) / f"step_{step:06d}" / "lora.safetensors" if resume else None
        return {"lora_path": str(lora) if lora else None, "steps": step, "final_loss": None,
                "final_smooth_loss": None, "seconds": round(time.monotonic() - self.started, 3), "stopped": True,
                "resumed_from": step, "nan_steps": 0}

    # ------------------------------------------------------------ the end
    def finish(self, stopped: bool) -> dict:
        config, loop = self.config, self.loop
        self.flush(force=True)
        early = self._rewind() if not stopped and self.evaluation.stop_step() is not None else {}
        step = loop.state.step
        if step != self.last_saved:
            self.save(step)
        share = None  # how much of the LoRA's change the final previews show without the trigger word
        if stopped:
            self.log(f"Stopped at step {step}; resume continues from this checkpoint.")
            lora_path = ckpt.checkpoint_dir(self.job_dir) / f"step_{step:06d}" / "lora.safetensors"
        else:
            final_samples = self.job_dir / "samples" / f"step_{step:06d}"
            if step != self.last_sampled and (step > self.start or not final_samples.is_dir()):
                final_samples = self._final_previews(step)  # the proof grid needs them, previews on or off
            with loop.averaged():
                lora = networks.file_tensors(self.transformer, self.config)
            lora_path = ckpt.save_final(self.job_dir, config.name, lora, self.metadata_at(step))
            share = leak.step_leak(final_samples) if final_samples is not None else None
            facts = proof.RunFacts(sources_label(self.sources) if len(self.sources) > 1 else "",
                                   self.progress.device_name, self.preserved, share)
            written = proof.write(self.job_dir, config, lora_path, final_samples, step,
                                  _shown_loss(loop.state.smooth_loss, loop.state.last_loss), self.triggers, facts)
            if share is not None and share >= leak.LEAKS and self.preservation is None:
                said = leak.advice(share, demo=bool(getattr(self.paths, "demo", False)))
                self.log(said)
                self.progress.notice(said, step)
            thinned, freed = free_training_states(self.job_dir)
            if thinned:
                self.log(f"Freed {format_bytes(freed)}: the training state of {thinned} earlier checkpoint"
                         f"{'s' * (thinned != 1)} (their LoRA files stay; the last checkpoint stays whole for "
                         "Train more steps).")
            self.log(f"Done: {lora_path.name} after {step} steps; beside it: "
                     + ", ".join(p.name for p in written.values()) + ".")
        final_loss = loop.state.last_loss
        self.progress.emit("done", step, final_loss, loop.state.smooth_loss,
                           message="Stopped" if stopped else "Finished", force=True)
        return {
            "lora_path": str(lora_path),
            "steps": step,
            "final_loss": _shown_loss(None, final_loss),
            "final_smooth_loss": _shown_loss(loop.state.smooth_loss, final_loss),
            "seconds": round(time.monotonic() - self.started, 3),
            "stopped": stopped,
            "resumed_from": self.start,
            "nan_steps": loop.state.nan_total,
            "encoder_calls": dict(self.cached.encoder_calls),
            "leak": share,
            **self.evaluation.result(),
            **early,
        }

    def _final_previews(self, step: int):
        """The last step's previews; None when a stop was asked while they rendered: every step is trained and saved
        by then, so the run completes with its LoRA, without them (instead of ending in an error)."""
        try:
            return self.sample(step)
        except StopRequested:
            said = (f"Stop asked while the previews of the last step ({step}) rendered: the final previews were left "
                    "out (and the proof grid with them); the LoRA is saved. Render some with Try the LoRA.")
            self.log(said)
            self.progress.notice(said, step)
            return None

    def _rewind(self) -> dict:
        """stop_when_overfitting: the LoRA goes back to the checkpoint nearest the held-out images' lowest loss."""
        trained_to = self.loop.state.step
        step = self.evaluation.rewind(self.loop, self.job_dir)
        if step is None:
            return {}
        self.last_saved = step
        if (self.job_dir / "samples" / f"step_{step:06d}").is_dir():
            self.last_sampled = step  # its previews are the proof's
        return {"stopped_early_at": trained_to}


def _shown_loss(smooth, last) -> float | None:
    """The loss people compare runs by: smoothed (one step's loss swings with its noise level), else the last."""
    value = smooth if smooth is not None and math.isfinite(smooth) else last
    return float(value) if value is not None and math.isfinite(value) else None
