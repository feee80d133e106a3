"""Datasets in object storage (S3, R2, MinIO): import a prefix into a dataset, push an export to a prefix.

Both run as background jobs (the RunPod proxy cuts requests at 100 s). Imported files go through the
same import job as uploads, so they are decoded, checked and named exactly like uploaded images.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

from flask import Blueprint, jsonify

from app import context, import_limit
from app.export import export_folder
from app.frame_choice import check_frames, in_config, with_frames
from app.hub_import import importable_name
from app.importer import UNSUPPORTED, Source, run_import
from studio.job_reporter import JobReporter
from studio.jobs import Job, JobError
from studio.s3 import Storage, StorageError, StoredObject, normalize_prefix, storage_configured
from studio.s3_mirror import mirror_folder
from studio.text import plural
from studio.web import ApiError, json_body
from studio.workspace import UnsafePathError, confined, unused_path

bp = Blueprint("s3_import", __name__)
IMPORT_KIND = "s3-import"
PUSH_KIND = "s3-push"


def _request_storage(body: dict) -> tuple[Storage, str]:
    """The storage client and prefix a request names; errors are answered before any job starts."""
    settings = context.settings()
    bucket = body.get("bucket")
    if bucket is not None and (not isinstance(bucket, str) or not bucket.strip()):
        raise ApiError("'bucket' must be a bucket name.", 422)
    prefix = body.get("prefix", "")
    if not isinstance(prefix, str):
        raise ApiError("'prefix' must be text, e.g. \"datasets/anna/\".", 422)
    bucket, prefix = bucket_and_prefix(bucket, prefix)
    if not storage_configured(settings) and not (bucket and settings.s3_access_key and settings.s3_secret_key):
        raise ApiError("Object storage is not configured: set S3_BUCKET, S3_ACCESS_KEY_ID and "
                       "S3_SECRET_ACCESS_KEY (or the R2_* names) and restart.", 409)
    try:
        storage = Storage.from_settings(settings, bucket=bucket, max_attempts=2)
        prefix = normalize_prefix(prefix)
        storage.check()  # wrong keys or a missing bucket answer now, not later in a job
    except StorageError as exc:
        status = 422 if exc.code in {"bad_prefix", "no_such_bucket", "wrong_region"} else 502
        raise ApiError(exc.message, status, details=[{"code": exc.code}]) from None
    return storage, prefix


def bucket_and_prefix(bucket: str | None, prefix: str) -> tuple[str | None, str]:
    """A prefix given as an address, as consoles and the aws CLI show one (`s3://bucket/datasets/anna/`, or `r2://`),
    names its bucket too; a bucket given beside it must be the same one."""
    found = re.match(r"^\s*(?:s3|r2|s3a)://([^/\s]+)(/.*)?$", prefix, re.IGNORECASE)
    if not found:
        return bucket, prefix
    if bucket is not None and bucket.strip() != found[1]:
        raise ApiError(f"The prefix names the bucket {found[1]!r}, the request the bucket {bucket.strip()!r}: give "
                       "one of them.", 422)
    return found[1], found[2] or ""


def _job_state(dataset_id: str, job_id: str, kind: str) -> dict:
    return context.dataset_job(context.dataset(dataset_id), job_id, (kind,)).public()


@bp.post("/api/datasets/<dataset_id>/import-s3")
def start_import(dataset_id: str):
    return jsonify(start_s3_import(context.dataset(dataset_id), json_body()).public()), 202


def start_s3_import(dataset, body: dict, skip_known: bool = False) -> Job:
    """The import job for a bucket prefix (ApiError, before any job, for a wrong bucket, prefix or keys); the body
    may choose the frames taken from videos (app.frame_choice)."""
    limit, frames = import_limit.check_limit(body.get("limit")), check_frames(body)
    spread = import_limit.check_spread(body, limit)
    storage, prefix = _request_storage(body)
    settings = with_frames(context.settings(), frames)
    work_dir = confined(context.workspace().uploads, f"s3-{secrets.token_hex(8)}")

    def work(job: JobReporter) -> dict:
        download = work_dir / "download"
        held: list[StoredObject] = []  # with a limit: downloaded only while the import wants more images
        # files that give no image nor caption (a checkpoint, notes) are not downloaded, nor counted against the
        # size limit; they and the objects the keys may not read are said as skipped
        left_out: list[tuple[str, str]] = []

        def select(objects: list[StoredObject]) -> list[StoredObject]:
            left_out.extend((o.key, UNSUPPORTED + " (not downloaded)") for o in objects
                            if not importable_name(o.key))
            objects = [o for o in objects if importable_name(o.key)]
            unsafe = {o.key: why for o in objects if (why := _unsafe_key(download, o.key[len(prefix):]))}
            left_out.extend(unsafe.items())  # said in the report, not only in the log
            objects = [o for o in objects if o.key not in unsafe]
            first, later = import_limit.split(objects, limit, lambda o: o.key, spread)
            held.extend(later)
            return first

        try:
            job.update(phase="downloading", message=f"Listing {storage.bucket}/{prefix}")

            def progress(p: dict) -> None:
                job.check_stop()
                job.update(phase="downloading", done=p["files_done"], total=p["files_total"],
                           bytes_done=p["bytes_done"], bytes_total=p["bytes_total"],
                           message=f"Downloading {p['files_done']} of {plural(p['files_total'], 'file')}")

            max_bytes = settings.max_upload_mb * 2**20
            try:
                files = storage.download_prefix(prefix, download, on_progress=progress, max_bytes=max_bytes,
                                                select=select, refused=left_out)
            except StorageError as exc:
                raise JobError(exc.message + (" Take fewer images." if limit and exc.code == "too_large" else "")) \
                    from None
            if not files and not held and not left_out:  # a file's own key (a ZIP in the bucket), not a folder
                files = _one_file(storage, prefix, download, max_bytes, progress)
            sources = [Source(path.relative_to(download).as_posix(), path) for path in files]
            budget = import_limit.Budget(max_bytes, sum(path.stat().st_size for path in files), spread)
            sources += [Source(obj.key[len(prefix):], prepare=_later(storage, obj, download, prefix, budget))
                        for obj in held]
            result = run_import(job, dataset, sources, settings, work_dir / "import", skip_known=skip_known,
                                limit=limit, spread=spread)
            result["skipped"] = result.get("skipped", []) + [{"name": key[len(prefix):], "reason": why}
                                                              for key, why in left_out]
            result["source"] = {"bucket": storage.bucket, "prefix": prefix,
                                "files": sum(1 for source in sources if source.path is not None) + len(left_out)}
            return result
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    config = {"source": "s3", "bucket": storage.bucket, "prefix": prefix, "limit": limit, "spread": spread,
              **in_config(frames)}
    return context.executor().submit(IMPORT_KIND, dataset.id, work, config=config)


def _unsafe_key(folder: Path, relative: str) -> str | None:
    """Why an object whose key is `relative` under the prefix cannot be downloaded into `folder` (a key that leads
    out of it, "../x.png"; a name no file may have), else None."""
    parts = [part for part in relative.split("/") if part]
    try:
        confined(folder, *parts)
    except UnsafePathError:
        if ".." in parts:
            return "its key leads out of the folder ('..'), so it was not downloaded"
        return "its key is not a name a file can have here, so it was not downloaded"
    return None


def _one_file(storage: Storage, prefix: str, download: Path, max_bytes: int, progress) -> list[Path]:
    """[the object whose key the prefix is] downloaded; JobError when there is none either."""
    key = prefix.rstrip("/")
    try:
        found = storage.stat(key) if key else None
    except StorageError as exc:
        raise JobError(exc.message) from None
    if found is None:
        raise JobError(f"Nothing was found under {storage.bucket}/{prefix}: check the prefix (a folder of the "
                       "bucket, e.g. datasets/anna/, or the key of one file in it).")
    if found.size > max_bytes:
        raise JobError(f"{storage.bucket}/{key} is {found.size / 1e6:,.0f} MB, more than the "
                       f"{max_bytes / 1e6:,.0f} MB allowed (MAX_UPLOAD_MB).")
    moved = [0]

    def on_bytes(amount: int) -> None:
        moved[0] += amount
        progress({"files_done": 0, "files_total": 1, "bytes_done": min(moved[0], found.size),
                  "bytes_total": found.size})

    try:
        target = confined(download, key.rsplit("/", 1)[-1])
        return [storage.download_file(key, target, on_bytes=on_bytes)]
    except UnsafePathError:
        raise JobError(f"{key} has an unsafe name: nothing was imported.") from None
    except StorageError as exc:
        raise JobError(exc.message) from None


def _later(storage: Storage, obj: StoredObject, download: Path, prefix: str, budget: import_limit.Budget):
    """The download of one object the import asks for only while it wants more images (a limit)."""
    def prepare(job: JobReporter) -> Path:
        budget.take(f"{storage.bucket}/{obj.key}", obj.size)
        job.update(phase="downloading", message=f"Downloading {obj.key}", bytes_done=0, bytes_total=obj.size)
        arrived = [0]

        def on_bytes(amount: int) -> None:  # boto3's threads: a large file shows its progress and stops at once
            arrived[0] += amount
            job.update(bytes_done=min(arrived[0], obj.size))
            job.check_stop()

        try:
            target = unused_path(confined(download, *[part for part in obj.key[len(prefix):].split("/") if part]))
            return storage.download_file(obj.key, target, on_bytes=on_bytes)
        except UnsafePathError:
            raise JobError(f"{obj.key} has an unsafe name: nothing was imported.") from None
        except StorageError as exc:
            raise JobError(exc.message) from None

    return prepare


@bp.get("/api/datasets/<dataset_id>/import-s3/<job_id>")
def import_progress(dataset_id: str, job_id: str):
    return jsonify(_job_state(dataset_id, job_id, IMPORT_KIND))


@bp.post("/api/datasets/<dataset_id>/push-s3")
def start_push(dataset_id: str):
    dataset = context.dataset(dataset_id)
    body = json_body()
    name, folder = export_folder(dataset, body.get("export"))
    body.setdefault("prefix", f"datasets/{name}/")
    storage, prefix = _request_storage(body)
    if not prefix:
        raise ApiError("Give a 'prefix' to push to (the bucket root is not allowed).", 422)

    def work(job: JobReporter) -> dict:
        job.update(phase="uploading", message=f"Uploading {name} to {storage.bucket}/{prefix}")

        def progress(p: dict) -> None:
            job.check_stop()
            job.update(done=p["files_done"], total=p["files_total"], bytes_done=p["bytes_done"],
                       bytes_total=p["bytes_total"],
                       message=f"Uploaded {p['files_done']} of {plural(p['files_total'], 'file')}")

        try:
            pushed = mirror_folder(storage, folder, prefix, on_progress=progress)
        except StorageError as exc:
            raise JobError(exc.message) from None
        notes = [f"{plural(len(pushed['removed']), 'file')} of an earlier push removed"] if pushed["removed"] else []
        notes += [f"{plural(pushed['others'], 'other file')} there left as they were"] if pushed["others"] else []
        job.update(message=f"Pushed {plural(len(pushed['keys']), 'file')} to {storage.bucket}/{prefix}"
                           + (f" ({'; '.join(notes)})." if notes else "."))
        return {"bucket": storage.bucket, "prefix": prefix, "files": len(pushed["keys"]), "export": name,
                "removed": pushed["removed"], "others": pushed["others"]}

    return jsonify(context.executor().submit(PUSH_KIND, dataset.id, work).public()), 202


@bp.get("/api/datasets/<dataset_id>/push-s3/<job_id>")
def push_progress(dataset_id: str, job_id: str):
    return jsonify(_job_state(dataset_id, job_id, PUSH_KIND))
