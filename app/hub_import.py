"""Import a Hugging Face dataset, a folder of one or one file of one, from its link.

    https://huggingface.co/datasets/<owner>/<name>                       the whole repo
    https://huggingface.co/datasets/<owner>/<name>/tree/<rev>/<folder>   one folder
    https://huggingface.co/datasets/<owner>/<name>/blob/<rev>/<file>     one file (a ZIP, an image; /resolve/ too)
    https://huggingface.co/datasets/<owner>/<name>/viewer/<config>/<split>   one split (the files named for it)

The pod lists the repo with huggingface-hub and downloads its images, captions (`.txt` beside each image, or a
`metadata.jsonl` / `metadata.csv`), ZIPs and Parquet files with its own HF_TOKEN, so a private or gated dataset
imports as well as a public one. Everything is read at one commit, so a push during the download cannot mix two
versions. Then the same import job as an upload checks and places every image (and every row of a Parquet file).
"""

from __future__ import annotations

import itertools
import logging
import os
import posixpath
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from app import imaging, import_limit
from app.caption_files import is_metadata_name
from app.importer import Source
from app.video_frames import is_video_name
from studio.fetch_progress import counting_bar
from studio.hub_files import FetchError, RemoteFile, hub_error, verify_file
from studio.jobs import JobError, JobStopped
from studio.settings import Settings
from studio.text import name_list, plural
from studio.web import ApiError
from studio.workspace import UnsafePathError, confined

log = logging.getLogger(__name__)
HUB_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
PARALLEL = 8
TRIES_WITHOUT_BYTES = 5  # a file whose connection keeps breaking goes on while each answer brings something new
READ_TIMEOUT_S = 30
RETRY_PAUSE_S = 1.0  # times the tries in a row that brought nothing
_PART = re.compile(r"^[\w.-]+$")


@dataclass(frozen=True)
class HubLink:
    repo: str  # owner/name
    revision: str
    path: str  # a folder or a file in the repo; "" for all of it
    is_file: bool = False
    config: str = ""  # from a viewer link: the subset and the split it shows
    split: str = ""

    @property
    def label(self) -> str:
        if self.split:
            return f"{self.repo} ({self.split} split)"
        return f"{self.repo}/{self.path}" if self.path else self.repo


def hub_link(url: str) -> HubLink | None:
    """The dataset a huggingface.co/datasets/... link names; None for any other link (a model's file, another
    host), which downloads as a plain link. ApiError for a dataset link the studio cannot follow."""
    parts = urlsplit(url)
    segments = [unquote(part) for part in parts.path.split("/") if part]
    if (parts.hostname or "").lower() not in HUB_HOSTS or len(segments) < 3 or segments[0] != "datasets":
        return None
    owner, name, rest = segments[1], segments[2], segments[3:]
    if not (_PART.match(owner) and _PART.match(name)) or ".." in (owner, name):
        raise ApiError(f"{owner}/{name} is not a Hugging Face dataset name.", 422)
    repo = f"{owner}/{name}"
    if not rest:  # the dataset's page: the whole repo
        return HubLink(repo, "main", "")
    if rest[0] == "viewer":  # the viewer of a subset and a split: the files named for them
        config, split = (rest[1:] + ["", ""])[:2]
        return HubLink(repo, "main", "", config=config if _PART.match(config) else "",
                       split=split if _PART.match(split) else "")
    if rest[0] not in {"tree", "blob", "resolve"} or len(rest) < 2:
        raise ApiError("Link the dataset itself, one of its folders (…/tree/main/<folder>) or one of its files "
                       "(…/blob/main/<file>).", 422)
    path = "/".join(rest[2:])
    if any(part in {".", ".."} for part in rest[2:]) or "\\" in path:
        raise ApiError("That link's path leaves the dataset.", 422)
    is_file = rest[0] != "tree"
    if is_file and not path:
        raise ApiError("That link names no file of the dataset.", 422)
    return HubLink(repo, rest[1], path, is_file)


def importable_name(path: str) -> bool:
    """Whether a file of a dataset (in a repo, a bucket) can give images or captions: the rest is not downloaded."""
    lower = path.lower()
    return (imaging.is_image_name(lower) or lower.endswith((".txt", ".zip", ".parquet")) or is_metadata_name(lower)
            or is_video_name(lower))  # a video gives its sharpest frames


def size(entry) -> int:
    return entry.lfs.size if entry.lfs else entry.size


def _nothing_there(link: HubLink, others: list[str]) -> JobError:
    where = f"{link.label} at {link.revision}"
    if others:
        return JobError(f"{where} has no images, ZIPs, Parquet files or captions ({plural(len(others), 'other file')}: "
                        f"{name_list(sorted(others))}).")
    return JobError(f"{where} has no files.")


def listed(api, link: HubLink, commit: str, cap: int | None = None) -> tuple[list, bool]:
    """The repo files to import (images, captions, metadata, ZIPs, Parquet) under the link, sorted, and whether the
    listing stopped at `cap` files (a check of a huge dataset); JobError when there are none."""
    from huggingface_hub import RepoFile

    folder = posixpath.dirname(link.path) if link.is_file else link.path
    tree = iter(api.list_repo_tree(link.repo, path_in_repo=folder or None, revision=commit, repo_type="dataset",
                                   recursive=not link.is_file))
    entries = [entry for entry in itertools.islice(tree, cap) if isinstance(entry, RepoFile)]
    cut = cap is not None and next(tree, None) is not None
    if link.is_file:
        entries = [entry for entry in entries if entry.path == link.path]
        if not entries:
            raise JobError(f"{link.repo} has no file {link.path!r} at {link.revision}.")
    wanted = (entry for entry in entries if importable_name(entry.path))
    chosen = _of_split(sorted(wanted, key=lambda entry: entry.path), link)
    if not chosen:
        raise _nothing_there(link, [entry.path for entry in entries])
    return chosen, cut


def list_files(api, link: HubLink, commit: str, max_bytes: int, limit: int | None = None,
               spread: bool = False) -> tuple[list, list]:
    """The repo files to download under the link, as (those downloaded at once, those downloaded one by one only
    while the import still wants images: import_limit.split); JobError otherwise."""
    first, later = import_limit.split(listed(api, link, commit)[0], limit, lambda entry: entry.path, spread)
    total = sum(size(entry) for entry in first)
    if total > max_bytes:
        what = ("of images and captions" if limit is None else
                f"in the {plural(limit, 'image')} spread over it and their captions" if spread else
                f"in its first {plural(limit, 'image')} and captions")
        raise JobError(f"{link.label} has {total / 2**20:,.0f} MB {what}, over the limit of "
                       f"{max_bytes / 2**20:,.0f} MB (MAX_UPLOAD_MB): link one folder of it "
                       "(…/tree/main/<folder>), take fewer images, or raise MAX_UPLOAD_MB.")
    return first, later


def _of_split(chosen: list, link: HubLink) -> list:
    """The files of the viewer link's subset (a folder named for it) and split (a folder, or a file named
    `<split>`, `<split>-00000-of-00003`, `<split>_…`), with every metadata file; all of them when no image, ZIP or
    Parquet file is named so (the repo lays its splits out some other way)."""

    def named(path: str, word: str, folders_only: bool) -> bool:
        parts = path.lower().split("/")
        stem = posixpath.splitext(parts[-1])[0]
        return word in parts[:-1] or (not folders_only and (stem == word or stem.startswith(
            (f"{word}-", f"{word}_", f"{word}."))))

    for word, folders_only in ((link.config.lower(), True), (link.split.lower(), False)):
        if not word or word == "default":
            continue
        kept = [entry for entry in chosen if is_metadata_name(entry.path) or named(entry.path, word, folders_only)]
        if any(not is_metadata_name(entry.path) for entry in kept):
            chosen = kept  # still sorted
    return chosen


class _Progress:
    """Bytes downloaded so far, counted from huggingface-hub's progress bars (several files at once)."""

    def __init__(self, job, total_bytes: int, files: int, label: str):
        self.job, self.total_bytes, self.files, self.label = job, total_bytes, files, label
        self.lock = threading.Lock()
        self.finished_bytes = 0
        self.files_done = 0
        self.partial: dict[str, int] = {}
        self.aborted = False  # a file failed or the job stops: the others stop at their next block

    def bar_class(self, path: str):
        def count(n: int) -> None:
            with self.lock:
                self.partial[path] = self.partial.get(path, 0) + n
            self.report()

        return counting_bar(count)

    def arrived(self, path: str, held: int) -> None:
        """`path` holds `held` bytes so far (less than before when a server sent it again from the start)."""
        with self.lock:
            self.partial[path] = held
        self.report()

    def file_done(self, path: str, size: int) -> None:
        with self.lock:
            self.partial.pop(path, None)
            self.finished_bytes += size
            self.files_done += 1
        self.report()

    def report(self) -> None:
        if self.aborted:
            raise JobStopped()
        self.job.check_stop()  # from a progress callback too, so a stop ends a large file's download
        with self.lock:
            done = min(self.total_bytes, self.finished_bytes + sum(self.partial.values()))
            files_done = self.files_done
        self.job.update(phase="downloading", bytes_done=done, bytes_total=self.total_bytes, done=files_done,
                        total=self.files, message=f"Downloading {self.label}: {files_done} of "
                                                  f"{plural(self.files, 'file')}")


def download(job, link: HubLink, settings: Settings, folder: Path, limit: int | None = None,
             spread: bool = False) -> list[Source]:
    """Every wanted file of the link as import sources named by their repo path: downloaded into `folder` now, or,
    with a `limit`, the files after the first images downloaded when the import asks for them (list_files)."""
    from huggingface_hub import HfApi, hf_hub_download

    token = settings.hf_token or False
    max_bytes = settings.max_upload_mb * 2**20
    api = HfApi(endpoint=settings.hf_endpoint, token=token)
    job.update(phase="downloading", message=f"Listing {link.label} on Hugging Face")
    try:
        commit = api.dataset_info(link.repo, revision=link.revision).sha or link.revision
        first, later = list_files(api, link, commit, max_bytes, limit, spread)
    except JobError:
        raise
    except Exception as exc:  # every hub failure is one sentence
        raise job_error(exc, link) from None
    targets = {}
    for entry in first + later:
        try:
            targets[entry.path] = confined(folder, entry.path)
        except UnsafePathError:
            raise JobError(f"{link.repo} lists a file with an unsafe path ({entry.path!r}): nothing was "
                           "imported.") from None
    budget = import_limit.Budget(max_bytes, sum(size(entry) for entry in first), spread)

    def fetch_all(reporter, files: list, label: str) -> None:
        progress = _Progress(reporter, sum(size(entry) for entry in files), len(files), label)

        def fetch(entry) -> None:
            if entry.xet_hash and _xet_ready():  # Xet's own client, which retries its chunks itself
                hf_hub_download(link.repo, entry.path, repo_type="dataset", revision=commit, local_dir=folder,
                                token=token, endpoint=settings.hf_endpoint, tqdm_class=progress.bar_class(entry.path))
            else:
                fetch_file(link.repo, entry, commit, targets[entry.path], token, settings.hf_endpoint, progress)
            progress.file_done(entry.path, size(entry))

        progress.report()
        try:
            _in_parallel(files, fetch, progress)
        except (JobError, JobStopped):
            raise
        except Exception as exc:
            # a stop seen inside huggingface-hub's own download (Xet's client runs the progress callback in its
            # threads) comes back as that download's error: a stop asked for is a stop, not a failed download
            reporter.check_stop()
            raise job_error(exc, link) from None

    def fetch_later(entry):
        def prepare(reporter) -> Path:
            budget.take(f"{link.repo}/{entry.path}", size(entry))
            fetch_all(reporter, [entry], f"{link.label} ({entry.path})")
            return targets[entry.path]

        return prepare

    fetch_all(job, first, link.label)
    return [Source(entry.path, targets[entry.path]) for entry in first] + \
        [Source(entry.path, prepare=fetch_later(entry)) for entry in later]


def _xet_ready() -> bool:
    from huggingface_hub import constants
    from huggingface_hub.utils._runtime import is_xet_available

    return is_xet_available() and not constants.HF_HUB_DISABLE_XET


def fetch_file(repo: str, entry, commit: str, target: Path, token, endpoint: str | None,
               progress: _Progress) -> None:
    """One repo file into `target`, checked against the listing's size and hash. A connection that breaks off goes on
    from the bytes that arrived (an HTTP Range), however small the file (huggingface-hub's own download keeps
    nothing of a read under 10 MB cut short, so a small file on a connection that keeps dropping starts over each
    time and fails); it gives up after TRIES_WITHOUT_BYTES answers in a row that brought nothing."""
    import httpx2
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo, entry.path, repo_type="dataset", revision=commit, endpoint=endpoint)
    headers = {**build_hf_headers(token=token), "Accept-Encoding": "identity"}  # byte ranges of the file itself
    expected = RemoteFile(entry.path, size(entry), entry.lfs.sha256 if entry.lfs else None,
                          None if entry.lfs else entry.blob_id)
    part = target.with_name(f".{target.name}.incomplete")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.unlink(missing_ok=True)
    held, fruitless = 0, 0
    while True:
        before, broken = held, "an answer cut short"
        try:
            with get_session().stream("GET", url, headers={**headers, **({"Range": f"bytes={held}-"} if held else {})},
                                      timeout=httpx2.Timeout(READ_TIMEOUT_S, connect=15)) as response:
                if response.status_code == 416:  # what arrived is no part of this file: start over
                    held = 0
                else:
                    if response.status_code >= 400:
                        response.read()  # the hub's error sentence is in the body
                    hf_raise_for_status(response)
                    if held and response.status_code != 206:
                        held = 0  # the server sends the whole file again
                    with open(part, "r+b" if held else "wb") as sink:
                        sink.seek(held)
                        sink.truncate()
                        progress.arrived(entry.path, held)
                        for block in response.iter_bytes():
                            sink.write(block)
                            held += len(block)
                            progress.arrived(entry.path, held)
                            if held > expected.size:
                                break
                    if held > expected.size:  # not the file the listing gave: start over
                        held, broken = 0, f"more than the {expected.size} bytes listed"
                    elif held == expected.size:
                        problem = verify_file(part, expected)
                        if problem is None:
                            os.replace(part, target)
                            return
                        log.warning("%s/%s: %s; downloading it again", repo, entry.path, problem)
                        held, broken = 0, problem
        except (httpx2.TransportError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)):
                raise  # the disk's, not the network's
            broken = type(exc).__name__
        except Exception as exc:
            from huggingface_hub.errors import HfHubHTTPError

            status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else 0
            if status < 500 and status not in (408, 429):
                raise  # the hub's answer (not found, gated, private): a sentence, no retry
            broken = f"HTTP {status}"
        fruitless = 0 if held > before else fruitless + 1
        if fruitless >= TRIES_WITHOUT_BYTES:
            part.unlink(missing_ok=True)
            raise JobError(f"The download of {repo}/{entry.path} failed {fruitless} times in a row without "
                           f"getting further ({broken}): try again (the import resumes).")
        log.info("%s/%s broke off at %d bytes (%s); going on from there", repo, entry.path, held, broken)
        pause_until = time.monotonic() + fruitless * RETRY_PAUSE_S  # longer while nothing arrives; a stop ends it
        while time.monotonic() < pause_until:
            progress.report()
            time.sleep(min(0.25, RETRY_PAUSE_S))


def _in_parallel(files: list, fetch, progress: _Progress) -> None:
    """`fetch` every file on PARALLEL daemon threads. A stop or a failure returns at once: a download in flight
    cannot be interrupted, so it is left to end on its own (its folder is removed) instead of being waited for."""
    todo = list(reversed(files))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        while not progress.aborted:
            with lock:
                if not todo:
                    return
                entry = todo.pop()
            try:
                fetch(entry)
            except BaseException as exc:  # handed to the job's thread, which raises the first one
                errors.append(exc)
                progress.aborted = True
                return

    threads = [threading.Thread(target=worker, daemon=True, name="hub-import") for _ in range(min(PARALLEL,
                                                                                                    len(files)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive() and not errors:
                thread.join(0.5)
                progress.report()  # also between a large file's progress callbacks
    except JobStopped:
        progress.aborted = True
        if not errors:
            raise
    except BaseException:
        progress.aborted = True
        raise
    if errors:
        raise errors[0]


def job_error(exc: Exception, link: HubLink) -> JobError:
    from huggingface_hub.errors import OfflineModeIsEnabled, RemoteEntryNotFoundError

    if isinstance(exc, OfflineModeIsEnabled):
        return JobError("The studio runs offline (HF_HUB_OFFLINE=1): it cannot download from Hugging Face.")
    if isinstance(exc, RemoteEntryNotFoundError):
        return JobError(f"{link.repo} has no folder {link.path!r} at {link.revision}.")
    if isinstance(exc, FetchError):
        return JobError(str(exc))
    return JobError(str(hub_error(exc, link.repo, link.revision)))
