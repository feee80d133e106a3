"""Checkpoints (`checkpoints/step_NNNNNN/` with lora.safetensors + state.pt) and the final LoRA file.

A checkpoint folder is written under a temporary name and renamed into place, so a folder named
step_N is always complete; a crash mid-write leaves only a `.tmp-` folder that the next save removes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from studio.disk import is_disk_full
from trainer.engine.errors import TrainingError
from trainer.step_dirs import complete_checkpoints, lora_checkpoints


def checkpoint_dir(job_dir: Path) -> Path:
    return Path(job_dir) / "checkpoints"


def list_checkpoints(job_dir: Path) -> list[tuple[int, Path]]:
    return complete_checkpoints(job_dir)


def latest_checkpoint(job_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(job_dir)
    return found[-1] if found else None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_lora_file(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomic safetensors write."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def nearest_step(steps: list[int], target: int | None) -> int | None:
    """The step of `steps` nearest `target` (the earlier one on a tie); None without either."""
    if target is None or not steps:
        return None
    return min(steps, key=lambda step: (abs(step - target), step))


def save_checkpoint(job_dir: Path, step: int, lora: dict[str, torch.Tensor], metadata: dict[str, str],
                    state: dict, keep_last: int, protect: int | None = None) -> Path:
    """Writes checkpoint `step` and deletes all but the last `keep_last`, except the one nearest step `protect`
    (where the held-out images' loss was lowest: the checkpoint most likely to generalise)."""
    root = checkpoint_dir(job_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-step_{step:06d}-"))
    try:
        write_lora_file(tmp / "lora.safetensors", lora, metadata)
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, **metadata}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            previous = latest_checkpoint(job_dir)
            kept = f"the checkpoint from step {previous[0]} is kept" if previous else "no earlier checkpoint exists"
            raise TrainingError(f"The disk is full: the checkpoint for step {step} could not be saved and {kept}; "
                                "free space (old jobs, cache) and resume the job.") from exc
        raise
    found = lora_checkpoints(job_dir)  # an earlier run's LoRA-only checkpoints count too (Train more steps)
    kept = nearest_step([s for s, _ in found], protect)
    for old_step, old in found[:-keep_last]:
        if old_step != kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(path: Path) -> dict:
    # our own file, written by save_checkpoint; it holds numpy/python RNG states, hence weights_only=False
    return torch.load(path / "state.pt", map_location="cpu", weights_only=False)


def save_final(job_dir: Path, name: str, lora: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    path = Path(job_dir) / "lora" / f"{name}.safetensors"
    try:
        write_lora_file(path, lora, metadata)
    except OSError as exc:
        if is_disk_full(exc):
            raise TrainingError("The disk is full: the final LoRA could not be written; free space and resume the "
                                "job (the last checkpoint is kept).") from exc
        raise
    return path
