"""What the evaluation loss measures (trainer.engine.evaluation), apart from torch so that the job estimate in
the web process can count its cost."""

EVAL_SIGMAS = (0.25, 0.5, 0.75)  # noise levels measured: mostly detail, half, mostly composition
EVAL_IMAGES = 4  # training images measured (one example each)
HOLDOUT_MEASURED = 16  # held-out images measured at most
EVAL_FILE = "eval.jsonl"  # one line per evaluation in the job folder: step, eval_loss, holdout_loss, seconds
# what a job's result says of its evaluations (the last ones; with held-out images, where theirs was lowest)
EVAL_RESULT_KEYS = ("eval_loss", "holdout_loss", "best_holdout_step", "best_holdout_loss", "stopped_early_at")


def eval_interval(config) -> int:
    """Steps between evaluations: eval_every, or save_every when it is empty (0: none)."""
    every = getattr(config, "eval_every", 0)
    return int(config.save_every if every is None else every)
