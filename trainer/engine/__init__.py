"""The training engine: `train(config, dataset_dir, job_dir, model_paths, control, on_progress, device)`."""

from __future__ import annotations

from trainer.engine.control import TrainingControl
from trainer.engine.errors import TrainingError
from trainer.engine.training_run import train

__all__ = ["TrainingControl", "TrainingError", "train"]
