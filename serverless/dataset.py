"""Fetch a training dataset for one serverless job and turn it into an exported-dataset folder.

A dataset is an S3 prefix (`{"bucket"?, "prefix"}`), a ZIP or a Parquet file at an http(s) URL (`{"url"}`) or a
Hugging Face dataset's link (`{"url": "https://huggingface.co/datasets/..."}`, downloaded with HF_TOKEN); the URL
is fetched only because the job input asks for it. ZIPs and Parquet files (a hub dataset's tables: one image and
its caption per row) found in a prefix or a hub dataset are unpacked where they lie. serverless.images then decodes
them as the engine reads them.
"""

from __future__ import annotations

import posixpath
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path

from app.hub_import import hub_link
from studio.s3 import Storage, StorageError, normalize_prefix
from studio.settings import Settings
from studio.web import ApiError
from studio.workspace import UnsafePathError, confined

# a link download that sends less than this in this long is given up (not left to hold the GPU)
STALL_BYTES = 1 << 20
STALL_S = 120.0


class DatasetInputError(ValueError):
    """The dataset named in the job input cannot be used; the message is one sentence."""

    def __init__(self, message: str, details: list | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


def parse_dataset_spec(spec) -> dict:
    """Check the `dataset` input: exactly one of {url} or {prefix (+ bucket)}; returns a clean copy."""
    if not isinstance(spec, dict):
        raise DatasetInputError("`dataset` must be an object: {\"bucket\", \"prefix\"} or {\"url\"}.")
    unknown = sorted(set(spec) - {"bucket", "prefix", "url"})
    if unknown:
        raise DatasetInputError("`dataset` has unknown keys.",
                                [{"field": f"dataset.{k}", "message": "Unknown key."} for k in unknown])
    if "url" in spec:
        if "prefix" in spec or "bucket" in spec:
            raise DatasetInputError("`dataset` takes either `url` or `bucket`/`prefix`, not both.")
        url = spec["url"]
        if not is_link(url):
            raise DatasetInputError("`dataset.url` must be an http(s) address of a ZIP or Parquet file or a "
                                    "Hugging Face dataset.",
                                    [{"field": "dataset.url", "message": "Use an https:// link to a .zip."}])
        try:
            hub_link(url)
        except ApiError as exc:
            raise DatasetInputError(exc.message, [{"field": "dataset.url", "message": exc.message}]) from None
        return {"url": url}
    prefix = spec.get("prefix")
    if not isinstance(prefix, str):
        raise DatasetInputError("`dataset.prefix` is required (a folder in the bucket), or give `dataset.url`.",
                                [{"field": "dataset.prefix", "message": "Required."}])
    bucket = spec.get("bucket")
    if bucket is not None and (not isinstance(bucket, str) or not bucket.strip()):
        raise DatasetInputError("`dataset.bucket` must be a bucket name.",
                                [{"field": "dataset.bucket", "message": "Must be a non-empty string."}])
    try:
        return {"bucket": bucket, "prefix": normalize_prefix(prefix)}
    except StorageError as exc:
        raise DatasetInputError(exc.message, [{"field": "dataset.prefix", "message": "Not a valid prefix."}]) from None


def is_link(url) -> bool:
    """Whether `url` is an http(s) address the link download can ask (a port past 65535 or an unclosed "[" would
    only fail deep inside it), no longer than the pod's import takes."""
    from app.link_fetch import is_web_address
    from app.url_import import MAX_URL

    return isinstance(url, str) and len(url) <= MAX_URL and is_web_address(url)


# RunPod's stop for the dataset under way (the handler sets it around a dataset's download and unpacking): the dataset
# manager's ZIP, Parquet, hub and video readers ask their reporter between entries, and end with studio.jobs.JobStopped
STOP: ContextVar[threading.Event | None] = ContextVar("serverless_stop", default=None)


def quiet(on_update=None):
    from studio.job_reporter import QuietReporter

    return QuietReporter(on_update, stop=STOP.get())


class JobStopped(Exception):
    """RunPod stopped the job (cancelled, or past the endpoint's execution timeout)."""


class _LinkWatch:
    """The link download's reporter (studio.job_reporter's interface): it ends the download when the job is stopped,
    or when the link sends less than STALL_BYTES in STALL_S (a link that trickles would hold the paid GPU for
    hours: the socket's own timeout only counts the time between two blocks)."""

    def __init__(self, on_bytes, stop: threading.Event | None, what: str):
        self.on_bytes, self.stop, self.what = on_bytes, stop, what
        self.mark_time, self.mark_bytes = time.monotonic(), 0
        self.message, self.errors = "", []

    def __call__(self, values: dict) -> None:
        self.update(**values)

    def update(self, force: bool = False, **values) -> None:
        done = values.get("bytes_done")
        if done is None:
            return
        if done - self.mark_bytes >= STALL_BYTES:
            self.mark_time, self.mark_bytes = time.monotonic(), done
        if self.on_bytes:
            self.on_bytes(done)

    def stalled(self) -> bool:
        return time.monotonic() - self.mark_time > STALL_S

    def stop_requested(self) -> bool:
        return (self.stop is not None and self.stop.is_set()) or self.stalled()

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise JobStopped()
        if self.stalled():
            raise DatasetInputError(f"The {self.what} link sent less than {STALL_BYTES >> 10} KB in {STALL_S:.0f} s: "
                                    "put the file where it downloads faster (S3, R2, Hugging Face) and try again.")

    def add_error(self, item: str, message: str) -> None:
        return None

    def flush(self) -> None:
        return None


def download_url(url: str, target: Path, max_bytes: int, allow_private: bool,
                 on_bytes: Callable[[int], None] | None = None, what: str = "dataset",
                 stop: threading.Event | None = None) -> Path:
    """Stream `url` into `target` with the dataset manager's link download (a share page of a common host becomes
    its download; every redirect hop checked, private addresses refused unless ALLOW_PRIVATE_URLS=1), refusing
    more than `max_bytes`, a link that stalls, and going on once `stop` is set (JobStopped); errors name it as
    `what` ("The dataset link: ...")."""
    from app import link_fetch
    from app.url_import import direct_link
    from studio.jobs import JobError

    try:
        link_fetch.fetch_to(_LinkWatch(on_bytes, stop, what), direct_link(url), target, max_bytes, allow_private)
    except JobError as exc:
        target.unlink(missing_ok=True)
        raise DatasetInputError(f"The {what} link: {exc}") from None
    except (DatasetInputError, JobStopped):  # nothing half downloaded stays behind
        target.unlink(missing_ok=True)
        raise
    return target


def skipped_as(items: list[dict], label: str) -> list[dict]:
    """The dataset manager's skipped entries ({"name": "<label>/<entry>" or "<label> row 3", "reason"}) as the job's
    output lists them: {"file", "reason"}, the file named without the label."""
    return [{"file": item["name"].removeprefix(label).lstrip("/ "), "reason": item["reason"]} for item in items]


def extract_zip(archive: Path, dest: Path, max_total_bytes: int, max_ratio: int) -> list[dict]:
    """Extract with the dataset manager's own guard (unsafe names skipped, sizes and ratios counted while
    decompressing), then lay the images out under `dest` by their archive paths with their captions. Returns the
    entries left out and why (an unsafe name, a caption without its image...): the job's output says them."""
    from app import zipimport
    from app.caption_files import caption_key
    from studio.jobs import JobError

    if not zipfile.is_zipfile(archive):
        raise DatasetInputError("The dataset URL did not return a ZIP or a Parquet file.")
    staging = dest.parent / ".zip-staging"
    try:
        try:
            extracted = zipimport.extract_zip(archive, staging, quiet(), max_total_bytes,
                                              max_ratio, "The dataset ZIP")
        except JobError as exc:
            raise DatasetInputError(str(exc)) from None
        skipped = skipped_as(extracted.skipped, "The dataset ZIP")
        for name, staged in extracted.images + extracted.tables + extracted.videos:  # tables' rows go beside them
            try:
                target = confined(dest, *[part for part in name.split("/") if part])
            except UnsafePathError:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(target)
            if target.suffix.lower() == ".parquet":
                left = unpack_parquet(target, target.with_suffix(""), max_total_bytes)
                skipped += [{**item, "file": posixpath.join(posixpath.dirname(name), item["file"])} for item in left]
                target.unlink()
                continue
            caption = extracted.captions.get(caption_key(name))
            if caption is not None:
                target.with_suffix(".txt").write_text(caption, "utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return skipped


def unpack_parquet(table: Path, dest: Path, max_total_bytes: int) -> list[dict]:
    """The row images of a Parquet file under `dest`, each with its caption as a same-stem `.txt`, through the
    dataset manager's reader (sizes checked from the footer and counted while writing); returns the rows left out."""
    from app.parquet_import import extract_parquet
    from studio.jobs import JobError

    staging = dest.parent / ".parquet-staging"
    try:
        try:
            unpacked = extract_parquet(table, staging, quiet(), max_total_bytes, f"The dataset's {table.name}",
                                       table.stem)
        except JobError as exc:
            raise DatasetInputError(str(exc)) from None
        dest.mkdir(parents=True, exist_ok=True)
        for row in unpacked.rows:
            target = confined(dest, row.name)
            row.path.replace(target)
            if row.caption is not None:
                target.with_suffix(".txt").write_text(row.caption, "utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return skipped_as(unpacked.skipped, "The dataset's")


def _unpack_containers(files: list[Path], settings: Settings) -> list[dict]:
    """ZIPs and Parquet files among the downloaded ones, unpacked where they lie (then removed); returns what they
    left out, each named after its ZIP ("more.zip/a.txt") or table ("train.parquet row 3")."""
    max_total = settings.zip_max_total_mb * 1024 * 1024
    skipped = []
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".zip":
            left = extract_zip(path, path.with_suffix(""), max_total, settings.zip_max_ratio)
            skipped += [{**item, "file": f"{path.name}/{item['file']}"} for item in left]
        elif suffix == ".parquet":
            skipped += unpack_parquet(path, path.with_suffix(""), max_total)
        else:
            continue
        path.unlink(missing_ok=True)
    return skipped


def fetch_dataset(spec: dict, settings: Settings, raw_dir: Path,
                  on_progress: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
                  outputs: str | None = None) -> list[dict]:
    """Download the dataset named by a parsed spec into `raw_dir` (files as they come); returns what its ZIPs and
    Parquet files left out ({"file", "reason"}). Keys under `outputs` (the
    worker's output prefix in the default bucket) are never part of a dataset: a prefix above it ("" for the whole
    bucket) would otherwise train on earlier jobs' LoRA previews."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    max_bytes = settings.max_upload_mb * 1024 * 1024
    dataset_link = hub_link(spec["url"]) if "url" in spec else None
    if dataset_link is not None:
        return _fetch_hub_dataset(dataset_link, settings, raw_dir, on_progress)
    if "url" in spec:
        from app.url_import import kind_of

        archive = raw_dir.parent / "dataset.zip"

        def report(done: int) -> None:
            if on_progress:
                on_progress({"phase": "downloading", "bytes_done": done})

        download_url(spec["url"], archive, max_bytes, settings.allow_private_urls, report, stop=stop)
        with open(archive, "rb") as handle:
            is_parquet = kind_of(handle.read(16)) == ".parquet"  # the link import's own signatures
        max_total = settings.zip_max_total_mb * 1024 * 1024
        left = unpack_parquet(archive, raw_dir, max_total) if is_parquet else \
            extract_zip(archive, raw_dir, max_total, settings.zip_max_ratio)
        archive.unlink(missing_ok=True)
        return left
    storage = Storage.from_settings(settings, bucket=spec.get("bucket"))
    skip = outputs if outputs and storage.bucket == settings.s3_bucket and not \
        normalize_prefix(spec["prefix"]).startswith(outputs) else None
    files = storage.download_prefix(
        spec["prefix"], raw_dir, max_bytes=max_bytes,
        on_progress=(lambda p: on_progress({"phase": "downloading", **p})) if on_progress else None,
        select=(lambda found: [o for o in found if not o.key.startswith(skip)]) if skip else None)
    if not files:
        raise DatasetInputError(f"Nothing was found under {storage.bucket}/{spec['prefix']}: check the prefix.",
                                [{"field": "dataset.prefix", "message": "Empty prefix."}])
    return _unpack_containers(files, settings)


def _fetch_hub_dataset(link, settings: Settings, raw_dir: Path, on_progress) -> list[dict]:
    """A Hugging Face dataset (or a folder or file of one) into `raw_dir` as the repo lays it out, its ZIPs and
    Parquet files unpacked where they lie, through the dataset manager's hub download (HF_TOKEN, one commit)."""
    from app.hub_import import download
    from studio.jobs import JobError

    def report(values: dict) -> None:
        if on_progress and values.get("phase") == "downloading":
            on_progress({key: values[key] for key in ("phase", "bytes_done", "bytes_total") if key in values})

    try:
        sources = download(quiet(report), link, settings, raw_dir)
    except JobError as exc:
        raise DatasetInputError(str(exc)) from None
    shutil.rmtree(raw_dir / ".cache", ignore_errors=True)  # huggingface-hub's bookkeeping, not the dataset's
    return _unpack_containers([source.path for source in sources], settings)
