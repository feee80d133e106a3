"""Push a finished job's LoRA, samples and config to object storage when S3_OUTPUT_PREFIX is set."""

from __future__ import annotations

import logging
from pathlib import Path

from studio.s3 import Storage, StorageError, join_key, storage_configured
from studio.s3_outputs import upload_job_outputs
from studio.settings import Settings
from studio.workspace import safe_name

log = logging.getLogger(__name__)


def push_job_outputs(settings: Settings, job_dir: Path, job_name: str) -> dict | None:
    """Upload to `<S3_OUTPUT_PREFIX>/<job_name>/`; None when no output prefix (or storage) is configured.

    Raises `StorageError` (a sentence for the job log) when the upload fails; the job itself stays
    completed, its files are on disk either way.
    """
    if not settings.s3_output_prefix:
        return None
    if not storage_configured(settings):
        raise StorageError("S3_OUTPUT_PREFIX is set but the bucket or keys are missing: set S3_BUCKET, "
                           "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY.", code="not_configured")
    storage = Storage.from_settings(settings)
    prefix = join_key(settings.s3_output_prefix, safe_name(job_name)) + "/"
    result = upload_job_outputs(storage, Path(job_dir), prefix)
    log.info("pushed %d files of job %s to %s/%s", len(result["keys"]), job_name, storage.bucket, prefix)
    return result
