"""S3-compatible object storage (AWS S3, Cloudflare R2, MinIO) for datasets and training outputs.

`Storage.from_settings(settings)` builds a boto3 client from the `S3_*` (or `R2_*`) settings. Every
failure becomes a `StorageError` whose message is one sentence for the user; the keys themselves never
appear in a message, a log line or a reply (botocore's own messages are not shown, they are mapped).
"""

from __future__ import annotations

import logging
import mimetypes
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from studio.settings import Settings
from studio.workspace import UnsafePathError, confined, unused_path

log = logging.getLogger(__name__)

# Progress callbacks get {"files_done", "files_total", "bytes_done", "bytes_total", "key"}.
ProgressCallback = Callable[[dict], None]


WRONG_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException",
                "InvalidRegionName"}


class StorageError(Exception):
    """Object storage failed; `str(exc)` is one sentence for the user, free of credentials."""

    def __init__(self, message: str, code: str = "storage_error"):
        super().__init__(message)
        self.message = message
        self.code = code


class StorageNotConfigured(StorageError):
    def __init__(self, message: str):
        super().__init__(message, code="not_configured")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def public_endpoint(endpoint: str | None) -> str:
    """The endpoint as it may be shown: without any user:password part."""
    if not endpoint:
        return "AWS S3"
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def normalize_prefix(prefix: str | None) -> str:
    """'a/b' and '/a/b/' -> 'a/b/'; '' stays '' (the whole bucket). Rejects '..' parts."""
    text = (prefix or "").strip().strip("/")
    if not text:
        return ""
    parts = [p for p in text.split("/") if p]
    if any(p in {".", ".."} or "\\" in p or "\x00" in p for p in parts):
        raise StorageError(f"The prefix {prefix!r} is not valid: use plain folder names separated by '/'.",
                           code="bad_prefix")
    return "/".join(parts) + "/"


def join_key(prefix: str, *parts: str) -> str:
    return normalize_prefix(prefix) + "/".join(p.strip("/") for p in parts if p.strip("/"))


class Storage:
    """One bucket on one S3-compatible endpoint."""

    def __init__(self, client, bucket: str, endpoint: str | None, secrets: tuple[str, ...] = ()):
        self.client = client
        self.bucket = bucket
        self.endpoint = endpoint
        self._secrets = tuple(s for s in secrets if s)

    @classmethod
    def from_settings(cls, settings: Settings, bucket: str | None = None, max_attempts: int = 3) -> Storage:
        import boto3
        from botocore.config import Config

        bucket = (bucket or settings.s3_bucket or "").strip()
        if not bucket:
            raise StorageNotConfigured("No bucket given: set S3_BUCKET (or R2_BUCKET) or name one in the request.")
        if not settings.s3_access_key or not settings.s3_secret_key:
            raise StorageNotConfigured(
                "Object storage keys are not set: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY "
                "(or the R2_* names)."
            )
        endpoint = settings.s3_endpoint
        # R2 wants region "auto"; AWS needs a real region when no endpoint is given.
        region = settings.s3_region or "auto"
        if not endpoint and region == "auto":
            region = "us-east-1"
        config = Config(
            # Path-style works on R2, MinIO and moto; virtual hosts need DNS per bucket.
            s3={"addressing_style": "path" if endpoint else "auto"},
            # Newer boto3 adds CRC checksums by default; several S3-compatible stores reject them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
        )
        try:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                aws_access_key_id=settings.s3_access_key,
                aws_secret_access_key=settings.s3_secret_key,
                config=config,
            )
        except ValueError:  # botocore rejects a malformed endpoint before any request
            raise StorageNotConfigured(f"S3_ENDPOINT_URL={public_endpoint(endpoint)!r} is not a valid address: use "
                                       "e.g. https://<account>.r2.cloudflarestorage.com.") from None
        return cls(client, bucket, endpoint, secrets=(settings.s3_access_key, settings.s3_secret_key))

    # ---- errors -------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, exc: Exception, action: str) -> StorageError:
        """Map a botocore failure to one sentence; botocore's own text is never shown."""
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        where = public_endpoint(self.endpoint)
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return StorageError(f"Cannot reach the storage endpoint {where}: check S3_ENDPOINT_URL and the network.",
                                code="unreachable")
        if isinstance(exc, ReadTimeoutError):
            return StorageError(f"The storage endpoint {where} stopped answering while {action}: try again.",
                                code="timeout")
        if isinstance(exc, NoCredentialsError):
            return StorageNotConfigured("Object storage keys are not set: set S3_ACCESS_KEY_ID and "
                                        "S3_SECRET_ACCESS_KEY.")
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if exc.response else None
            if code in {"InvalidAccessKeyId", "InvalidToken", "ExpiredToken"}:
                return StorageError("The storage does not know this access key: check S3_ACCESS_KEY_ID.",
                                    code="bad_credentials")
            if code == "SignatureDoesNotMatch":
                return StorageError("The storage rejected the secret key: check S3_SECRET_ACCESS_KEY.",
                                    code="bad_credentials")
            if code in {"NoSuchBucket"} or (code == "404" and action.startswith("checking")):
                return StorageError(f"The bucket {self.bucket!r} does not exist at {where}: create it or fix "
                                    "S3_BUCKET.", code="no_such_bucket")
            if code in {"NoSuchKey", "404"}:
                return StorageError(f"Nothing was found in bucket {self.bucket!r} while {action}.",
                                    code="not_found")
            if code in {"AccessDenied", "403", "AllAccessDisabled"} or status == 403:
                return StorageError(f"Access to bucket {self.bucket!r} was denied while {action}: give the key "
                                    "read and write permission on it.", code="access_denied")
            if code == "InvalidBucketName":
                return StorageError(f"{self.bucket!r} is not a valid bucket name.", code="no_such_bucket")
            if code in WRONG_REGION or status == 301:
                return self._wrong_region(exc.response)
            log.warning("storage error %s (HTTP %s) while %s", code, status, action)
            return StorageError(f"The storage answered {code or status} while {action}: try again or check "
                                "the bucket settings.")
        if type(exc).__name__ == "ParamValidationError" and "Invalid bucket name" in str(exc):
            return StorageError(f"{self.bucket!r} is not a valid bucket name: 3 to 63 lowercase letters, digits, "
                                "'-' and '.'.", code="no_such_bucket")
        log.warning("storage failure while %s: %s", action, self._scrub(f"{type(exc).__name__}: {exc}"))
        return StorageError(f"Object storage failed while {action} ({type(exc).__name__}).")

    def _wrong_region(self, response: dict) -> StorageError:
        """The store answers for another region than the client signs for (MinIO, AWS without auto-redirect)."""
        error = response.get("Error", {}) if isinstance(response, dict) else {}
        headers = (response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}).get("HTTPHeaders", {})
        region = str(error.get("Region") or headers.get("x-amz-bucket-region") or "")
        if not region:  # MinIO: "the region 'eu-west-1' is wrong; expecting 'us-east-1'"
            found = re.search(r"expecting '([\w-]+)'", str(error.get("Message", "")))
            region = found[1] if found else ""
        current = getattr(getattr(self.client, "meta", None), "region_name", None) or "auto"
        answer = f" (it answers for {region!r})" if region else ""
        return StorageError(f"The bucket {self.bucket!r} is in another region than S3_REGION={current!r}{answer}: "
                            "set S3_REGION to the bucket's region ('auto' for R2).", code="wrong_region")

    @contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action) from None
        except S3UploadFailedError as exc:  # boto3 wraps the store's refusal of an upload (its text names local paths)
            cause = exc.__context__ if isinstance(exc.__context__, (BotoCoreError, ClientError)) else exc
            raise self._error(cause, action) from None

    # ---- reading ------------------------------------------------------------------------------

    def check(self) -> None:
        """Prove the endpoint answers, the keys are valid and the bucket exists (one small listing)."""
        with self._mapped(f"checking bucket {self.bucket!r}"):
            # A listing, not HeadBucket: HEAD replies carry no error code to tell keys from buckets.
            self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        prefix = normalize_prefix(prefix)
        found: list[StoredObject] = []
        with self._mapped(f"listing {self.bucket}/{prefix}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []) or []:
                    if not item["Key"].endswith("/"):  # folder markers made by consoles
                        found.append(StoredObject(item["Key"], int(item.get("Size", 0))))
        return found

    def stat(self, key: str) -> StoredObject | None:
        """The object at exactly `key` (a file named where a prefix was expected); None when there is none."""
        try:
            with self._mapped(f"looking for {key}"):
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except StorageError as exc:
            if exc.code == "not_found":
                return None
            raise
        return StoredObject(key, int(head.get("ContentLength", 0)))

    def download_prefix(self, prefix: str, dest: Path, on_progress: ProgressCallback | None = None,
                        max_bytes: int | None = None, suffixes: set[str] | None = None,
                        select: Callable[[list[StoredObject]], list[StoredObject]] | None = None,
                        refused: list[tuple[str, str]] | None = None) -> list[Path]:
        """Copy every object under `prefix` into `dest`, keeping sub-folders; returns the local files.

        Keys that would land outside `dest` are skipped, and so are hidden files (`.DS_Store`, the studio's own
        record of a push). `max_bytes` bounds the total download. `select` picks the objects to copy from the
        listing (sorted by key). `on_progress` hears of the bytes of a large file as they arrive too, and an
        exception it raises (a stop) ends the download at once. With a `refused` list, an object the keys may not
        read (access denied) is left out and added to it as (key, why) instead of ending the download.
        """
        prefix = normalize_prefix(prefix)
        objects = [o for o in self.list_objects(prefix) if not o.key.rsplit("/", 1)[-1].startswith(".")]
        if suffixes is not None:
            objects = [o for o in objects if PurePosixPath(o.key).suffix.lower() in suffixes]
        if select is not None:
            objects = select(sorted(objects, key=lambda o: o.key))
        total = sum(o.size for o in objects)
        if max_bytes is not None and total > max_bytes:
            raise StorageError(f"{self.bucket}/{prefix} holds {total / 1e6:.0f} MB, more than the "
                               f"{max_bytes / 1e6:.0f} MB allowed.", code="too_large")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        done_bytes = 0
        files: list[Path] = []
        for index, obj in enumerate(objects):
            relative = obj.key[len(prefix):]
            try:
                target = unused_path(confined(dest, *[p for p in relative.split("/") if p]))
            except UnsafePathError:
                log.warning("skipping object with an unsafe name under %s/%s", self.bucket, prefix)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            meter = _ByteMeter(on_progress, {"files_done": index, "files_total": len(objects), "bytes_total": total,
                                             "key": obj.key}, done_bytes)
            try:
                with self._mapped(f"downloading {obj.key}"):
                    self.client.download_file(self.bucket, obj.key, str(target), Callback=meter)
            except StorageError as exc:
                if refused is None or exc.code != "access_denied":
                    raise
                target.unlink(missing_ok=True)
                refused.append((obj.key, "the storage keys may not read it (access denied)"))
                continue
            files.append(target)
            done_bytes += obj.size
            if on_progress:
                on_progress({"files_done": index + 1, "files_total": len(objects), "bytes_done": done_bytes,
                             "bytes_total": total, "key": obj.key})
        return files

    def download_file(self, key: str, target: Path, on_bytes: Callable[[int], None] | None = None) -> Path:
        """One object to `target`; `on_bytes(n)` hears of each block as it arrives (an exception it raises ends the
        download)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._mapped(f"downloading {key}"):
            self.client.download_file(self.bucket, key, str(target), Callback=on_bytes)
        return target

    def read_bytes(self, key: str, limit: int) -> bytes:
        """The first `limit` bytes of a small object (a record the studio wrote)."""
        with self._mapped(f"reading {key}"):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read(limit)

    def presigned_url(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        """A time-limited GET link for one object (it carries a signature, never the secret key)."""
        with self._mapped(f"signing a link for {key}"):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)

    # ---- writing ------------------------------------------------------------------------------

    def upload_file(self, path: Path, key: str, on_bytes: Callable[[int], None] | None = None) -> str:
        content_type = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        with self._mapped(f"uploading {key}"):
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type},
                                    Callback=on_bytes)
        return key

    def put_bytes(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        with self._mapped(f"writing {key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return key

    def delete(self, key: str, why: str = "") -> None:
        with self._mapped(f"removing {key}{why}"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def upload_files(self, files: list[tuple[Path, str]], on_progress: ProgressCallback | None = None) -> list[str]:
        """Upload (local path, key) pairs in order; returns the keys. `on_progress` hears of a large file's bytes as
        they go too, and an exception it raises (a stop) ends the upload at once."""
        total = sum(Path(p).stat().st_size for p, _ in files)
        done = 0
        keys = []
        for index, (path, key) in enumerate(files):
            meter = _ByteMeter(on_progress, {"files_done": index, "files_total": len(files), "bytes_total": total,
                                             "key": key}, done)
            self.upload_file(Path(path), key, on_bytes=meter)
            keys.append(key)
            done += Path(path).stat().st_size
            if on_progress:
                on_progress({"files_done": index + 1, "files_total": len(files), "bytes_done": done,
                             "bytes_total": total, "key": key})
        return keys

    def upload_folder(self, folder: Path, prefix: str, on_progress: ProgressCallback | None = None) -> list[str]:
        """Upload every file under `folder` (hidden files skipped) to `prefix`, keeping sub-folders."""
        folder = Path(folder)
        pairs = []
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in relative.parts):
                pairs.append((path, join_key(prefix, relative.as_posix())))
        return self.upload_files(pairs, on_progress)


class _ByteMeter:
    """boto3's transfer callback (called from its threads with each block's size): the progress of the transfer
    as a whole, `done` bytes before this file plus this file's bytes so far."""

    def __init__(self, on_progress: ProgressCallback | None, values: dict, done: int):
        self.on_progress, self.values, self.done = on_progress, values, done
        self.lock = threading.Lock()

    def __call__(self, amount: int) -> None:
        if self.on_progress is None:
            return
        with self.lock:
            self.done += amount
            done = self.done
        self.on_progress({**self.values, "bytes_done": min(done, self.values["bytes_total"])})


def storage_configured(settings: Settings) -> bool:
    return bool(settings.s3_bucket and settings.s3_access_key and settings.s3_secret_key)
