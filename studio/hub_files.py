"""Hub files for the model fetcher: list what a models.txt line selects, download one file, verify it.

Downloads resume: a file in progress is kept as a partial file under the target folder's
`.cache/huggingface/download/`, and a dropped connection, a retry or a restart continues it with an HTTP
Range request. Files stored with Xet go through huggingface-hub's Xet client when hf_xet is installed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from studio.models_txt import ModelSpec
from studio.settings import Settings
from studio.workspace import confined

if TYPE_CHECKING:
    from studio.fetch_progress import ProgressMeter

log = logging.getLogger("studio.fetch")


class FetchError(Exception):
    """A model cannot be fetched; `permanent` says whether retrying could help."""

    def __init__(self, message: str, permanent: bool = False, token_refused: bool = False):
        super().__init__(message)
        self.permanent = permanent
        self.token_refused = token_refused  # the hub refused HF_TOKEN itself (invalid or expired), not the repo


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None
    blob_id: str | None


def hub_error(exc: Exception, repo: str, revision: str, where: str = "", token_set: bool = False) -> FetchError:
    """One sentence for a failed hub request about `repo`; `where` (e.g. "models.txt line 3") ends it.
    `token_set`: HF_TOKEN was sent, so "set HF_TOKEN" would send the user looking for the wrong fix."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" ({where})" if where else ""
    if isinstance(exc, GatedRepoError):
        if token_set:
            return FetchError(f"{repo} is gated and the account of HF_TOKEN has no access yet: accept its terms on "
                              f"the hub while logged in as that account{at}.", True)
        return FetchError(f"{repo} is gated: accept its terms on the hub and set HF_TOKEN{at}.", True)
    if isinstance(exc, RepositoryNotFoundError):
        if token_set:
            return FetchError(f"{repo} was not found on the hub, or it is private and the account of HF_TOKEN "
                              f"cannot read it: check the repo name and the token's access{at}.", True)
        return FetchError(f"{repo} was not found on the hub, or it is private and HF_TOKEN is missing{at}.", True)
    if isinstance(exc, RevisionNotFoundError):
        return FetchError(f"{repo} has no revision {revision!r}{at}.", True)
    if isinstance(exc, RemoteEntryNotFoundError):
        return FetchError(f"A file listed for {repo} is not in the repo{at}.", True)
    if isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code in (401, 403):
        if token_set and exc.response.status_code == 401:
            return FetchError(f"The hub refused HF_TOKEN while asking for {repo}: the token is invalid or expired. "
                              f"Set a valid one, or unset it (public models need none){at}.", True, token_refused=True)
        return FetchError(f"The hub refused access to {repo}: check HF_TOKEN{at}.", True)
    if isinstance(exc, (httpx2.TransportError, OSError)):
        return FetchError(f"The hub could not be reached for {repo} ({type(exc).__name__}): check the network, "
                          f"or HF_ENDPOINT{at}.")
    return FetchError(f"{repo}: {type(exc).__name__}: {exc}".splitlines()[0])


def resolve_files(spec: ModelSpec, settings: Settings) -> tuple[str, list[RemoteFile]]:
    """Ask the hub for the commit and the files (with sizes and hashes) that the spec's patterns select."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.hf_endpoint, token=settings.hf_token or False)
    try:
        info = api.model_info(spec.repo, revision=spec.revision, files_metadata=True)
    except Exception as exc:  # every hub failure becomes one sentence with its models.txt line
        raise hub_error(exc, spec.repo, spec.revision, f"models.txt line {spec.line}",
                        token_set=bool(settings.hf_token)) from exc
    siblings = {s.rfilename: s for s in info.siblings or []}
    chosen: dict[str, RemoteFile] = {}
    for pattern in spec.patterns:
        names = [pattern] if spec.is_exact(pattern) else sorted(fnmatch.filter(siblings, pattern))
        if not names or (spec.is_exact(pattern) and pattern not in siblings):
            raise FetchError(f"{spec.repo} at {spec.revision} has no file matching {pattern!r} "
                             f"(models.txt line {spec.line}).", permanent=True)
        for name in names:
            if name.startswith("/") or "\\" in name or ".." in name.split("/"):
                raise FetchError(f"{spec.repo} lists a file with an unsafe path ({name!r}); it was not downloaded "
                                 f"(models.txt line {spec.line}).", permanent=True)
            sibling = siblings[name]
            lfs = sibling.lfs
            chosen[name] = RemoteFile(
                path=name,
                size=(lfs.size if lfs else sibling.size),
                sha256=(lfs.sha256 if lfs else None),
                blob_id=None if lfs else sibling.blob_id,
            )
    return info.sha or spec.revision, list(chosen.values())


def _file_hash_ok(path: Path, remote: RemoteFile) -> bool:
    if remote.sha256:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(8 << 20), b""):
                digest.update(block)
        return digest.hexdigest() == remote.sha256.lower()
    if remote.blob_id:
        # A small file kept in git: its id is sha1("blob <size>\0" + content).
        data = path.read_bytes()
        return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest() == remote.blob_id.lower()
    return True


def verify_file(path: Path, remote: RemoteFile) -> str | None:
    """None when `path` matches the hub's size and hash, else why not."""
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if remote.size is not None and size != remote.size:
        return f"size {size} instead of {remote.size}"
    if not _file_hash_ok(path, remote):
        return "hash does not match the hub's"
    return None


def _partial_dir(target_dir: Path) -> Path:
    # huggingface-hub's own download folder: the progress meter counts every *.incomplete file in it.
    return target_dir / ".cache" / "huggingface" / "download"


def partial_path(target_dir: Path, remote: RemoteFile) -> Path:
    """Where a download in progress is kept between attempts and restarts, named by the file's hash."""
    tag = (remote.sha256 or remote.blob_id or "nohash")[:16]
    return _partial_dir(target_dir) / f"{remote.path.replace('/', '__')}.{tag}.studio.incomplete"


def remove_stale_partials(target_dir: Path, remotes: list[RemoteFile]) -> None:
    """Partial files of other versions, and huggingface-hub's leftovers from a killed process, only take space."""
    keep = {partial_path(target_dir, remote) for remote in remotes}
    folder = _partial_dir(target_dir)
    if not folder.is_dir():
        return
    for path in folder.rglob("*.incomplete"):
        if path not in keep:
            log.info("removing a stale partial download %s", path.name)
            path.unlink(missing_ok=True)


def forget_local_copy(target_dir: Path, remote: RemoteFile) -> None:
    """Remove a bad file and huggingface-hub's record of it, so the next attempt downloads it again."""
    from huggingface_hub._local_folder import get_local_download_paths

    paths = get_local_download_paths(target_dir, remote.path)
    for path in (paths.file_path, paths.metadata_path, partial_path(target_dir, remote)):
        path.unlink(missing_ok=True)


def _ranged_get(url: str, headers: dict, part: Path, expected: int | None, meter, label: str) -> None:
    """Download `url` into `part`, continuing from what `part` already holds (HTTP Range)."""
    import requests

    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if expected is not None and have > expected:
        part.unlink()
        have = 0
    if expected is not None and have == expected:
        return
    request_headers = {**headers, "Accept-Encoding": "identity"}
    if have:
        request_headers["Range"] = f"bytes={have}-"
        log.info("resuming %s at %d bytes", part.name, have)
    try:
        with requests.get(url, headers=request_headers, stream=True, timeout=(15, 120)) as response:
            if response.status_code == 416:  # the partial file is no prefix of this version: start over
                part.unlink(missing_ok=True)
                raise FetchError(f"{label}: the server refused to resume; it is downloaded again from the start.")
            response.raise_for_status()
            if have and response.status_code != 206:
                have = 0  # the server ignored the range and sends the whole file
            with open(part, "ab" if have else "wb") as handle:
                done = have
                # Small reads: the bytes of a read cut short by a dropped connection are lost, not resumed.
                for chunk in response.iter_content(chunk_size=256 << 10):
                    handle.write(chunk)
                    done += len(chunk)
                    if meter is not None:
                        meter.current_file_bytes = done
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        broken = type(exc).__name__
    else:
        broken = None
    size = part.stat().st_size if part.exists() else 0
    if broken or (expected is not None and size != expected):
        from studio.model_status import format_bytes

        of = f" of {format_bytes(expected)}" if expected is not None else ""
        raise FetchError(f"{label}: the connection broke off after {format_bytes(size)}{of} "
                         f"({broken or 'short response'}); the download continues from there.")


def _same_or_hub_host(url: str, target: str) -> bool:
    try:  # huggingface-hub's own rule (same origin, or a known hub origin), so both agree on where a token goes
        from huggingface_hub.utils._http import _is_same_or_hub_host
    except ImportError:
        return urlparse(url).netloc == urlparse(target).netloc
    return _is_same_or_hub_host(url, target)


def download_file(spec: ModelSpec, commit: str, remote: RemoteFile, target_dir: Path, settings: Settings,
                  meter: ProgressMeter | None = None) -> Path:
    """Download one file to its place in `target_dir`, verified; return its path.

    Files stored with Xet go through huggingface-hub's Xet client when hf_xet is installed (fast, but a
    broken transfer starts that file again). Everything else is fetched over HTTP into a partial file that
    survives retries and restarts, so a dropped connection or a pod restart continues where it stopped.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub._local_folder import write_download_metadata
    from huggingface_hub.utils import build_hf_headers
    from huggingface_hub.utils._runtime import is_xet_available

    final = confined(target_dir, remote.path)
    token = settings.hf_token or False
    url = hf_hub_url(spec.repo, remote.path, revision=commit, endpoint=settings.hf_endpoint)
    metadata = get_hf_file_metadata(url, token=token, endpoint=settings.hf_endpoint)
    if metadata.xet_file_data is not None and is_xet_available() and not constants.HF_HUB_DISABLE_XET:
        hf_hub_download(repo_id=spec.repo, filename=remote.path, revision=commit, local_dir=target_dir,
                        token=token, endpoint=settings.hf_endpoint,
                        tqdm_class=meter.progress_bar_class() if meter is not None else None)
        if meter is not None:
            meter.verifying()
        problem = verify_file(final, remote)
        if problem:
            forget_local_copy(target_dir, remote)
            raise FetchError(f"{spec.repo}: {remote.path} failed verification ({problem}).")
        return final

    headers = build_hf_headers(token=token)
    location = metadata.location or url
    if not _same_or_hub_host(url, location):
        headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub
    part = partial_path(target_dir, remote)
    _ranged_get(location, headers, part, remote.size if remote.size is not None else metadata.size, meter,
                f"{spec.repo}: {remote.path}")
    if meter is not None:
        meter.verifying()
    problem = verify_file(part, remote)
    if problem:
        part.unlink(missing_ok=True)
        raise FetchError(f"{spec.repo}: {remote.path} failed verification ({problem}).")
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    write_download_metadata(target_dir, remote.path, commit_hash=metadata.commit_hash or commit,
                            etag=metadata.etag or (remote.sha256 or remote.blob_id or ""))
    return final
