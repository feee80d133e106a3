"""Names a new express run takes: its LoRA's and its export's, free among what exists and other runs' (whose
training job or export may not exist yet)."""

from __future__ import annotations

from app import context
from app.store import slugify
from studio.jobs import ACTIVE, Job


def lora_name(dataset_name: str) -> str:
    """A LoRA name from the dataset's name, free among jobs, the LoRA library and other express runs
    (whose training job may not exist yet)."""
    from trainer.names import taken_names, unique_name

    taken = taken_names(context.workspace(), context.jobs())
    taken |= {str(job.config.get("lora_name", "")).lower() for job in _named_runs()}
    return unique_name(dataset_name, taken)


def export_name(dataset_name: str) -> str:
    """The trainer dataset a new run exports to: its own, free among the exports there (the dataset manager's too)
    and other express runs' (whose export may not exist yet), so two runs of one trigger word never share one."""
    from trainer.names import unique_name

    exports = context.workspace().exports
    taken = {path.name.lower() for path in exports.iterdir()} if exports.is_dir() else set()
    taken |= {str(job.config.get("export_name", "")).lower() for job in _named_runs()}
    return unique_name(slugify(dataset_name), taken)


def _named_runs() -> list[Job]:
    """The express runs whose names are taken: all but those that ended before any file came (app.express_abandoned)."""
    return [job for job in context.jobs().list(kind="express", limit=5000)
            if job.phase != "upload" or job.status in ACTIVE]
