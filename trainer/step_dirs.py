"""A job folder's `step_NNNNNN/` folders (checkpoints/ and samples/), read without importing torch.

The web app, the worker and the engine all ask which checkpoints are complete: one definition here.
"""

from __future__ import annotations

import re
from pathlib import Path

STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dirs(folder: Path) -> list[tuple[int, Path]]:
    """(step, folder) for every `step_N` folder under `folder`, oldest first; none when it is missing."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = STEP_DIR.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def complete_checkpoints(job_dir: Path) -> list[tuple[int, Path]]:
    """Checkpoints with both the LoRA and the training state written, oldest first."""
    return [(step, path) for step, path in step_dirs(Path(job_dir) / "checkpoints")
            if (path / "lora.safetensors").is_file() and (path / "state.pt").is_file()]


def lora_checkpoints(job_dir: Path) -> list[tuple[int, Path]]:
    """Checkpoints with their LoRA written, oldest first: the complete ones and those an ended run kept the LoRA of
    (free_training_states). keep_last counts these."""
    return [(step, path) for step, path in step_dirs(Path(job_dir) / "checkpoints")
            if (path / "lora.safetensors").is_file()]


def latest_checkpoint_step(job_dir: Path) -> int | None:
    """The step of the newest complete checkpoint, if any."""
    found = complete_checkpoints(job_dir)
    return found[-1][0] if found else None


def earlier_states(job_dir: Path) -> list[Path]:
    """The training states (state.pt) of every complete checkpoint but the last."""
    return [path / "state.pt" for _, path in complete_checkpoints(job_dir)[:-1]]


def free_training_states(job_dir: Path) -> tuple[int, int]:
    """A job that is not running needs the training state (optimizer, RNG) of its last checkpoint only:
    resuming and Train more steps go on from it. The earlier checkpoints' state.pt go, each several times
    the LoRA's size; their LoRA files stay (Try the LoRA, the library). Returns (checkpoints, bytes freed)."""
    count = freed = 0
    for state in earlier_states(job_dir):
        try:
            size = state.stat().st_size
            state.unlink()
        except OSError:
            continue
        count, freed = count + 1, freed + size
    return count, freed
