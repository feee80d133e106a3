"""What a finished training job puts in object storage (the pod's push, the serverless worker's result): the LoRA,
its previews, config and metrics; checkpoints and the optimizer state stay local."""

from __future__ import annotations

from pathlib import Path

from studio.s3 import ProgressCallback, Storage, StorageError, normalize_prefix


def job_output_files(job_dir: Path, lora_path: Path | None = None) -> list[tuple[Path, str]]:
    """What a finished training job publishes: the LoRA, its samples, config and metrics.

    Returns (local path, relative key) pairs; checkpoints and the optimizer state stay local.
    """
    job_dir = Path(job_dir)
    pairs: list[tuple[Path, str]] = []
    loras = [Path(lora_path)] if lora_path else sorted((job_dir / "lora").glob("*.safetensors"))
    pairs += [(p, p.name) for p in loras if p.is_file()]
    for name in ("config.json", "metrics.jsonl", "eval.jsonl"):
        if (job_dir / name).is_file():
            pairs.append((job_dir / name, name))
    samples = job_dir / "samples"
    if samples.is_dir():
        for path in sorted(samples.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                pairs.append((path, "samples/" + path.relative_to(samples).as_posix()))
    return pairs


def upload_job_outputs(storage: Storage, job_dir: Path, prefix: str, lora_path: Path | None = None,
                       on_progress: ProgressCallback | None = None) -> dict:
    """Upload a finished job's outputs under `prefix`; returns {bucket, prefix, lora_key, keys}."""
    prefix = normalize_prefix(prefix)
    pairs = job_output_files(job_dir, lora_path)
    loras = [rel for _, rel in pairs if rel.endswith(".safetensors") and "/" not in rel]
    if not loras:
        raise StorageError(f"The job in {Path(job_dir).name} has no LoRA file to upload.", code="not_found")
    keys = storage.upload_files([(path, prefix + rel) for path, rel in pairs], on_progress)
    return {"bucket": storage.bucket, "prefix": prefix, "lora_key": prefix + loras[0], "keys": keys}

