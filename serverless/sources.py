"""What a serverless job trains on and from, checked before any download: one dataset (`dataset`) or several
(`datasets`, each with its `repeats`), and optionally a LoRA to start from (`start_lora`: an S3 key or an
https URL of a .safetensors file), which becomes the job's `init_lora`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from serverless.dataset import DatasetInputError, JobStopped, download_url, is_link, parse_dataset_spec
from studio.s3 import Storage, StorageError
from studio.settings import Settings
from trainer.dataset_checks import MAX_DATASETS, MAX_REPEATS, valid_repeats

START_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_KEY_BYTES = 1024  # S3's longest key


def parse_datasets(data: dict) -> list[tuple[dict, int]]:
    """[(dataset spec, repeats)] from `dataset` (repeats 1) or `datasets`; exactly one of them."""
    if ("dataset" in data) == ("datasets" in data):
        which = "both" if "dataset" in data else "neither"
        raise DatasetInputError(f"Give the job `dataset` or `datasets` (a list, each with its repeats), not {which}.",
                                [{"field": "dataset", "message": "Required." if which == "neither" else
                                  "Give `dataset` or `datasets`."}])
    if "dataset" in data:
        return [(parse_dataset_spec(data["dataset"]), 1)]
    many = data["datasets"]
    if not isinstance(many, list) or not 1 <= len(many) <= MAX_DATASETS:
        raise DatasetInputError(f"`datasets` must be a list of 1 to {MAX_DATASETS} datasets.",
                                [{"field": "datasets", "message": f"1 to {MAX_DATASETS} datasets."}])
    out = []
    for index, entry in enumerate(many):
        where = f"datasets[{index}]"
        if not isinstance(entry, dict):
            raise DatasetInputError(f"`{where}` must be an object.", [{"field": where, "message": "Not an object."}])
        repeats = entry.get("repeats", 1)
        if not valid_repeats(repeats):
            raise DatasetInputError(f"`{where}.repeats` must be a whole number from 1 to {MAX_REPEATS}.",
                                    [{"field": f"{where}.repeats", "message": f"1 to {MAX_REPEATS}."}])
        try:
            spec = parse_dataset_spec({key: value for key, value in entry.items() if key != "repeats"})
        except DatasetInputError as exc:
            details = [{**d, "field": str(d.get("field", "")).replace("dataset", where, 1)} for d in exc.details]
            raise DatasetInputError(f"{where}: {exc.message}", details) from None
        out.append((spec, repeats))
    return out


def parse_start_lora(spec) -> dict | None:
    """`start_lora`: {"bucket"?, "key"} or {"url"} of a .safetensors file; None when not given."""
    if spec is None:
        return None
    field = [{"field": "start_lora", "message": "Give {\"key\"} (and \"bucket\") or {\"url\"}."}]
    if not isinstance(spec, dict) or set(spec) - {"bucket", "key", "url"} or ("url" in spec) == ("key" in spec):
        raise DatasetInputError("`start_lora` must be {\"bucket\"?, \"key\"} or {\"url\"} of a .safetensors file.",
                                field)
    if "url" in spec:
        if not is_link(spec["url"]) or "bucket" in spec:
            raise DatasetInputError("`start_lora.url` must be an http(s) address of a .safetensors file.", field)
        return {"url": spec["url"]}
    key, bucket = spec["key"], spec.get("bucket")
    if (not isinstance(key, str) or not key.lower().endswith(".safetensors") or key.startswith("/")
            or len(key.encode("utf-8")) > MAX_KEY_BYTES or has_control(key)):
        # a newline or a NUL in a key would reach the store (and the job's log) only to fail there
        raise DatasetInputError("`start_lora.key` must be the key of a .safetensors file in the bucket (at most "
                                f"{MAX_KEY_BYTES} bytes, without control characters).", field)
    if bucket is not None and (not isinstance(bucket, str) or not bucket.strip() or has_control(bucket)):
        raise DatasetInputError("`start_lora.bucket` must be a bucket name.", field)
    return {"key": key, "bucket": bucket}


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (a newline, a NUL, DEL): never part of a key or a prefix."""
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def start_lora_name(spec: dict) -> str:
    """The name the job gives the LoRA it starts from (its file name without .safetensors)."""
    path = unquote(urlsplit(spec["url"]).path) if "url" in spec else spec["key"]
    stem = os.path.basename(path).rsplit(".", 1)[0]
    name = START_NAME.sub("-", stem).strip("-._")[:80]
    return name or "start-lora"


def fetch_start_lora(spec: dict, settings: Settings, target: Path,
                     on_progress: Callable[[dict], None] | None = None, stop: threading.Event | None = None) -> Path:
    """Download the LoRA to start from into `target` (kept there: a retried job finds it). Its bytes are reported
    to `on_progress` as they arrive (an exception it raises ends the download), and a set `stop` ends it at the
    next block (JobStopped)."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.part")
    if on_progress:
        on_progress({"phase": "downloading", "message": "Downloading the LoRA to start from"})

    def report(done: int) -> None:
        if stop is not None and stop.is_set():
            raise JobStopped()
        if on_progress:
            on_progress({"phase": "downloading", "message": "Downloading the LoRA to start from", "bytes_done": done})

    if "url" in spec:
        download_url(spec["url"], staging, settings.max_upload_mb * 1024 * 1024, settings.allow_private_urls,
                     report, what="start LoRA", stop=stop)
    else:
        storage = Storage.from_settings(settings, bucket=spec.get("bucket"))
        arrived = 0

        def count(block: int) -> None:  # boto3 tells each block's size, not the running total
            nonlocal arrived
            arrived += block
            report(arrived)

        try:
            storage.download_file(spec["key"], staging, on_bytes=count)
        except StorageError as exc:
            raise DatasetInputError(f"The LoRA to start from ({storage.bucket}/{spec['key']}) could not be "
                                    f"downloaded: {exc.message}", [{"field": "start_lora.key", "message": exc.message}]
                                    ) from None
    os.replace(staging, target)
    return target
