"""What the worker does with a job that trained to its end (trainer.worker): the LoRA copied to the library under
the name it had before when it was trained further, the outputs pushed to object storage when S3_OUTPUT_PREFIX is
set, and the sentence the job ends with. A copy or a push that fails is said in that sentence, never fatal."""

from __future__ import annotations

import logging
from pathlib import Path

from studio.jobs import Job
from trainer import library

log = logging.getLogger("trainer.worker")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


class JobOutputs:
    """Mixed into trainer.worker.Worker (its settings, workspace and store)."""

    def _own_library_file(self, job: Job) -> str | None:
        """The library file this job placed when it finished before (it was trained further since), unless
        another job's LoRA took that name after it was deleted from the library."""
        own = (job.result or {}).get("library_file")
        if not isinstance(own, str) or set(self.store.holders("train", "library_file", own)) - {job.id}:
            return None
        return own

    def _complete(self, job: Job, result: dict) -> Job:
        lora = result.get("lora_path")
        if not lora or not Path(lora).is_file():
            return self.store.finish(job.id, "failed", error="The training finished but its LoRA file is missing.")
        note = ""
        try:
            placed = library.publish(self.workspace, job, Path(lora), self._own_library_file(job))
            note = " Copied to " + " and ".join(_relative(p, self.settings.root) for p in placed) + "."
            result = {**result, "library_file": placed[0].name}  # which library file is this job's
        except OSError as exc:
            log.error("job %s: could not copy the LoRA to the library: %s", job.id, exc)
            note = f" It stays in the job folder: copying it to the LoRA library failed ({exc.strerror or exc})."
        note += self._push_outputs(job)
        loss = result.get("final_smooth_loss", result.get("final_loss"))
        loss_text = f", final loss {loss:.4f}" if isinstance(loss, int | float) else ""
        message = f"Finished {result.get('steps', job.step)} steps{loss_text}.{note}"
        if result.get("stopped_early_at"):  # stop_when_overfitting: the LoRA is an earlier checkpoint's
            message = (f"Stopped early at step {result['stopped_early_at']}: the held-out images' loss rose, so the "
                       f"LoRA is the checkpoint at step {result.get('steps')}{loss_text}.{note}")
            self.store.progress(job.id, {"step": result.get("steps")})
            self.store.update(job.id, total=result.get("steps"))  # done: the bar is full at the LoRA's step
        return self.store.finish(job.id, "completed", message=message, lora_path=str(lora), result=result)

    def _push_outputs(self, job: Job) -> str:
        """Upload the LoRA, samples and config when S3_OUTPUT_PREFIX is set; a failure is noted, not fatal."""
        if not self.settings.s3_output_prefix:
            return ""
        try:
            from studio.s3 import StorageError
            from trainer.s3_push import push_job_outputs
        except ImportError as exc:
            log.error("job %s: object storage support is missing (%s)", job.id, exc)
            return " It was not pushed to object storage: storage support is not installed."
        try:
            pushed = push_job_outputs(self.settings, self.workspace.job_dir(job.id), job.config.get("name") or job.id)
        except (StorageError, OSError) as exc:
            log.error("job %s: push to object storage failed: %s", job.id, exc)
            return f" Pushing it to object storage failed: {exc}"
        if not pushed:
            return ""
        prefix = pushed.get("prefix") or self.settings.s3_output_prefix.strip("/") + "/"
        return f" Pushed to s3://{pushed.get('bucket') or self.settings.s3_bucket}/{prefix}."
