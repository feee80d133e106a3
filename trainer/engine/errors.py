"""Errors the engine raises for the user: one sentence that says what failed and what to change."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A training job failed for a reason the user can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def is_oom(exc: BaseException) -> bool:
    """Out of GPU (or host) memory, whichever way torch says it."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def one_line(exc: BaseException, limit: int = 160) -> str:
    """'ValueError: the first line of its message' (cut to `limit`), for a log line or a notice."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:limit] if text else ''}"


def oom_error(config, step: int, on_gpu: bool, recomputing_all: bool = False) -> TrainingError:
    """Out-of-memory, naming the one setting most worth changing first. `recomputing_all`: every block
    already recomputed its activations (the run switched to that after a first out-of-memory)."""
    where = "GPU" if on_gpu else "machine"
    if config.batch_size > 1:
        advice = f"lower batch_size (now {config.batch_size}) to 1"
    elif config.gradient_checkpointing == "off" and not recomputing_all:
        advice = "set gradient_checkpointing to auto or on"
    elif config.quantize_base == "none" and on_gpu:
        advice = "set quantize_base to float8"
    elif max(config.resolutions) > 512:
        advice = f"remove the largest entries from resolutions (now {config.resolutions})"
    else:
        advice = f"lower rank (now {config.rank}) or use a GPU with more memory"
    return TrainingError(f"The {where} ran out of memory at step {step} (OOM); {advice} and resume the job.")
