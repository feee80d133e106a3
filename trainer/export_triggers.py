"""Which trigger word each dataset of a job trains with, from the dataset.json its export carries: the job's
for the first dataset (or the only one); each other dataset keeps the one it was exported with (its captions
carry it: one LoRA, several concepts), or takes the job's when it has none. Torch-free, so the job page can
say it too."""

from __future__ import annotations

import json
from pathlib import Path


def export_meta(dataset_dir: Path, key: str) -> str:
    """A text field of the dataset.json an export carries (its name, its trigger word), else ""."""
    try:
        meta = json.loads((Path(dataset_dir) / "dataset.json").read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    value = meta.get(key) if isinstance(meta, dict) else None
    return value.strip() if isinstance(value, str) else ""


def export_trigger(dataset_dir: Path) -> str:
    """The trigger word a dataset was exported with, else ""."""
    return export_meta(dataset_dir, "trigger_word")


def trigger_words(folders: list[Path], job_trigger: str) -> list[str]:
    """The trigger word of each dataset folder of a job, in order."""
    return [job_trigger] + [export_trigger(folder) or job_trigger for folder in folders[1:]]
