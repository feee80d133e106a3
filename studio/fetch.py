"""Model fetcher: `python -m studio.fetch`, a supervisord one-shot program started with the services.

Reads models.txt, downloads every listed file into STUDIO_ROOT/models/<target>/ with huggingface-hub
(HF_ENDPOINT, HF_TOKEN; Xet transfers when hf_xet is installed), and keeps a status file with bytes,
percent, speed and ETA per model that every page shows as a banner until the models are ready.

- Complete files are skipped: a per-folder manifest records each verified file's size and mtime, so a
  pod restart with everything on disk needs no network at all.
- Every file is verified against the hub's metadata: size, and sha256 (LFS files) or the git blob id.
- Downloads resume: a file in progress is kept as a partial file, and a dropped connection, a retry or a
  pod restart continues it with an HTTP Range request. Files stored with Xet go through huggingface-hub's
  Xet client when hf_xet is installed (fastest; an interrupted Xet file starts again). Transient failures
  are retried with exponential backoff.
- Demo mode (STUDIO_DEMO=1) builds the tiny demo models instead and reports them ready.

Exit codes: 0 when everything is ready or failed for a reason a retry cannot fix (the status file says
which); 75 after transient failures, so supervisord starts it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from studio.atomic import atomic_write_json, read_json
from studio.comfyui_models import comfyui_specs
from studio.disk import free_bytes, is_disk_full
from studio.fetch_progress import ProgressMeter, StatusFile
from studio.hub_files import (
    FetchError,
    RemoteFile,
    download_file,
    forget_local_copy,
    hub_error,
    partial_path,
    remove_stale_partials,
    resolve_files,
    verify_file,
)
from studio.models_txt import COMFYUI_TARGET, ModelsFileError, ModelSpec, load_models_txt
from studio.settings import Settings, SettingsError, load_settings
from studio.workspace import Workspace, confined

log = logging.getLogger("studio.fetch")
HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")

MANIFEST_NAME = ".studio-verified.json"
EXIT_TEMPORARY = 75  # EX_TEMPFAIL: supervisord restarts the fetcher
OPTIONAL_RESERVE = 15 * 10**9  # ComfyUI's copy of the model must leave this much for datasets and training
__all__ = ["FetchError", "ProgressMeter", "RetryPolicy", "StatusFile", "fetch_model", "main", "run"]


class Manifest:
    """`<target>/.studio-verified.json`: the files of one model already verified, with size and mtime."""

    def __init__(self, target_dir: Path, spec: ModelSpec):
        self.path = target_dir / MANIFEST_NAME
        self.target_dir = target_dir
        data = read_json(self.path, default={}) or {}
        same_spec = data.get("repo") == spec.repo and data.get("revision") == spec.revision \
            and data.get("patterns") == list(spec.patterns)
        files = data.get("files") if isinstance(data.get("files"), dict) else {}
        # A changed models.txt line needs a new listing, but the files verified before stay vouched for: each
        # record holds the hub's hash and size, which unchanged() compares with the new listing's.
        self.data = data if same_spec else {"files": files}
        self.data.update({"repo": spec.repo, "revision": spec.revision, "patterns": list(spec.patterns)})
        self.data.setdefault("files", {})

    @staticmethod
    def _stamp(path: Path) -> dict | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def unchanged(self, name: str, remote: RemoteFile | None = None) -> bool:
        record = self.data["files"].get(name)
        if not record:
            return False
        if remote is not None and (record.get("sha256") != remote.sha256 or record.get("blob_id") != remote.blob_id
                                   or (remote.size is not None and record.get("size") != remote.size)):
            return False
        stamp = self._stamp(confined(self.target_dir, name))
        return stamp is not None and stamp["size"] == record["size"] and stamp["mtime_ns"] == record["mtime_ns"]

    def complete_offline(self) -> bool:
        """Every file of the last resolved listing is still on disk, untouched."""
        listing = self.data.get("listing") or []
        return bool(self.data.get("commit")) and bool(listing) and all(self.unchanged(name) for name in listing)

    def record(self, remote: RemoteFile) -> None:
        stamp = self._stamp(confined(self.target_dir, remote.path))
        self.data["files"][remote.path] = {**stamp, "sha256": remote.sha256, "blob_id": remote.blob_id}
        atomic_write_json(self.path, self.data)

    def set_listing(self, commit: str, remotes: list[RemoteFile]) -> None:
        names = {remote.path for remote in remotes}
        self.data["commit"] = commit
        self.data["listing"] = sorted(names)
        self.data["files"] = {k: v for k, v in self.data["files"].items() if k in names}
        atomic_write_json(self.path, self.data)

    def total_size(self) -> int:
        return sum(record["size"] for record in self.data["files"].values())


@dataclass
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _with_retries(action, what: str, policy: RetryPolicy, held=None):
    """`action()`, tried up to `policy.attempts` times in a row that fail; a permanent FetchError at once.
    `held()`: how many bytes the download holds; an attempt that added some starts the count again, so a connection
    that drops every few hundred MB goes on to the end instead of giving up on a 20 GB file after five drops."""
    failures, most = 0, held() if held else 0
    while True:
        try:
            return action()
        except FetchError as exc:
            if exc.permanent:
                raise
            error = exc
        except Exception as exc:  # network and disk errors: retried, then reported with their cause
            error = exc
        now = held() if held else 0
        failures = 0 if now > most else failures + 1
        most = max(most, now)
        if failures >= policy.attempts:
            if isinstance(error, FetchError):
                raise error
            first_line = str(error).splitlines()[0] if str(error) else ""
            raise FetchError(f"{what}: {type(error).__name__}: {first_line}") from error
        wait = policy.delay(max(1, failures))
        log.warning("%s failed (%s); retrying in %.0f s (%d of %d tries in a row without progress)", what, error,
                    wait, failures, policy.attempts)
        time.sleep(wait)


def fetch_model(spec: ModelSpec, settings: Settings, status: StatusFile, refresh: bool = False,
                policy: RetryPolicy | None = None, progress_interval: float = 1.0) -> None:
    policy = policy or RetryPolicy()
    target_dir = confined(Workspace(settings.root).models, *spec.target.split("/"))
    target_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(target_dir, spec)
    if not refresh and manifest.complete_offline():
        count = len(manifest.data["listing"])
        size = manifest.total_size()
        status.update(spec.key, force=True, state="ready", bytes_done=size, bytes_total=size, files_done=count,
                      files_total=count)
        log.info("%s: all %d files already complete", spec.name, count)
        return

    status.update(spec.key, force=True, state="resolving")
    try:
        commit, remotes = _with_retries(lambda: resolve_files(spec, settings), f"{spec.repo}: listing files", policy)
    except FetchError as exc:
        if not exc.token_refused:
            raise
        # a mistyped or expired HF_TOKEN must not stop a public model: asked again without it, the hub answers
        # for a public repo (a private or gated one fails with the token named, as before)
        anonymous = dataclasses.replace(settings, hf_token=None)
        try:
            commit, remotes = resolve_files(spec, anonymous)
        except FetchError:
            raise exc from None
        log.warning("%s: the hub refused HF_TOKEN (invalid or expired); this public model downloads without it",
                    spec.name)
        settings = anonymous
    manifest.set_listing(commit, remotes)
    total = sum(remote.size or 0 for remote in remotes)
    status.update(spec.key, force=True, state="downloading", bytes_total=total, files_total=len(remotes),
                  bytes_done=0, files_done=0)

    remove_stale_partials(target_dir, remotes)
    _check_disk_space(target_dir, remotes, manifest, spec)
    meter = ProgressMeter(status, spec.key, target_dir, progress_interval)
    meter.start()
    try:
        # Small files first: configs appear quickly and the big transfer dominates the ETA.
        for index, remote in enumerate(sorted(remotes, key=lambda r: (r.size or 0, r.path)), start=1):
            path = confined(target_dir, remote.path)
            downloaded = False
            if not manifest.unchanged(remote.path, remote):
                if path.exists():
                    status.update(spec.key, force=True, state="verifying")
                    problem = verify_file(path, remote)
                    if problem:
                        log.info("%s: %s is not complete (%s); downloading it again", spec.name, remote.path, problem)
                        forget_local_copy(target_dir, remote)
                if not path.exists():
                    status.update(spec.key, force=True, state="downloading")

                    def attempt(r=remote):
                        meter.start_file()
                        try:
                            _download(spec, commit, r, target_dir, settings, meter)
                        except OSError as exc:
                            if not is_disk_full(exc):
                                raise
                            raise disk_full_error(spec, target_dir, _missing_bytes(target_dir, remotes,
                                                                                   manifest)) from exc

                    part = partial_path(target_dir, remote)
                    _with_retries(attempt, f"{spec.repo}: {remote.path}", policy,
                                  held=lambda p=part: _size(p))
                    downloaded = True
                manifest.record(remote)
            meter.file_done(remote.size or path.stat().st_size, downloaded)
            status.update(spec.key, files_done=index, bytes_done=meter.current()[0], state="downloading")
    finally:
        meter.stop()
    status.update(spec.key, force=True, state="ready", bytes_done=total, files_done=len(remotes), speed_bps=None,
                  eta_s=0, error=None)
    log.info("%s: ready (%d files, %d bytes)", spec.name, len(remotes), total)


def _missing_bytes(target_dir: Path, remotes: list[RemoteFile], manifest: Manifest) -> int:
    """The bytes still to download for these files: what is not on disk yet, less partial downloads."""
    missing = 0
    for remote in remotes:
        if manifest.unchanged(remote.path, remote):
            continue
        try:
            have = confined(target_dir, remote.path).stat().st_size
        except OSError:
            have = 0
        if have == remote.size:
            continue
        try:  # a partial download only needs its remainder
            have = partial_path(target_dir, remote).stat().st_size
        except OSError:
            have = 0
        missing += max(0, (remote.size or 0) - have)
    return missing


def _check_disk_space(target_dir: Path, remotes: list[RemoteFile], manifest: Manifest, spec: ModelSpec) -> None:
    """Fail before a long download that cannot fit, with the numbers the user needs."""
    missing = _missing_bytes(target_dir, remotes, manifest)
    free = shutil.disk_usage(target_dir).free
    from studio.model_status import format_bytes

    if missing > free:
        raise FetchError(f"Not enough disk space for {spec.name}: it needs {format_bytes(missing)} more and "
                         f"{target_dir} has {format_bytes(free)} free; enlarge the volume or free space.",
                         permanent=True)
    if spec.target == COMFYUI_TARGET and missing and free - missing < OPTIONAL_RESERVE:
        raise FetchError(f"{spec.name} was not downloaded: its {format_bytes(missing)} would leave less than "
                         f"{format_bytes(OPTIONAL_RESERVE)} of the {format_bytes(free)} free for datasets and "
                         "training. Enlarge the volume, or give ComfyUI model files of your own.", permanent=True)


def disk_full_error(spec: ModelSpec, folder: Path, needed: int | None = None) -> FetchError:
    """The disk filled up mid-download (something else wrote to it meanwhile): not a network problem, and retrying
    at once cannot help. The partial file stays, so the next start continues it. `needed`: the bytes still to
    download, said so the user knows how much to free."""
    from studio.model_status import format_bytes

    free = free_bytes(folder)
    room = f"{folder} has {format_bytes(free)} free" if free is not None else f"{folder} has no space left"
    need = f"it needs {format_bytes(needed)} more and {room}" if needed else room
    return FetchError(f"The disk filled up while downloading {spec.name}: {need}. Free space or enlarge the volume, "
                      "then start the download again; it continues where it stopped.", permanent=True)


def _download(spec: ModelSpec, commit: str, remote: RemoteFile, target_dir: Path, settings: Settings,
              meter: ProgressMeter) -> None:
    try:
        download_file(spec, commit, remote, target_dir, settings, meter)
    except FetchError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise  # said with the space still needed by the caller, which knows the model's files
        error = hub_error(exc, spec.repo, spec.revision, f"models.txt line {spec.line}",
                          token_set=bool(settings.hf_token))
        if error.permanent:
            raise error from exc
        raise


# ---------------------------------------------------------------- entry points


def fetch_demo(settings: Settings, status_path: Path) -> int:
    from studio.demo import ensure_demo_models

    keys = [("caption", "Qwen2.5-VL (demo)"), ("zimage", "Z-Image-Turbo (demo)"),
            ("adapter", "Training adapter (demo)")]
    state = {
        "state": "downloading", "demo": True, "pid": os.getpid(), "updated_at": time.time(),
        "models": [{"key": key, "name": name, "state": "building", "percent": 0.0, "bytes_done": 0,
                    "bytes_total": None, "speed_bps": None, "eta_s": None, "error": None} for key, name in keys],
    }
    atomic_write_json(status_path, state)
    started = time.monotonic()
    try:
        ensure_demo_models(settings)
    except Exception as exc:  # reported in the banner; the log keeps the traceback
        log.exception("building the demo models failed")
        for entry in state["models"]:
            entry.update(state="error", error=f"building the demo models failed: {type(exc).__name__}: {exc}")
        state.update(state="error", updated_at=time.time())
        atomic_write_json(status_path, state)
        return EXIT_TEMPORARY
    for entry in state["models"]:
        entry.update(state="ready", percent=100.0, eta_s=0)
    state.update(state="ready", updated_at=time.time())
    atomic_write_json(status_path, state)
    log.info("demo models ready in %.1f s", time.monotonic() - started)
    return 0


def run(settings: Settings, models_file: Path | None = None, refresh: bool = False,
        policy: RetryPolicy | None = None, progress_interval: float = 1.0, comfyui_file: Path | None = None) -> int:
    """Fetch every model (and ComfyUI's, after them, when ComfyUI is installed); return the exit code."""
    workspace = Workspace(settings.root).ensure()
    status_path = workspace.model_status_file
    if settings.demo:
        return fetch_demo(settings, status_path)
    try:
        specs = load_models_txt(models_file)
        if workspace.comfyui_loras is not None:  # ComfyUI is installed: the files its workflow names
            specs += comfyui_specs(specs, comfyui_file)
    except ModelsFileError as exc:
        atomic_write_json(status_path, {"state": "error", "demo": False, "pid": os.getpid(),
                                        "updated_at": time.time(), "error": str(exc), "models": []})
        log.error("%s", exc)
        return 0  # a typo in models.txt is not fixed by restarting
    status = StatusFile(status_path, specs, demo=False, interval=progress_interval)
    status.write()
    temporary_failure = False
    for spec in specs:
        try:
            try:
                fetch_model(spec, settings, status, refresh=refresh, policy=policy,
                            progress_interval=progress_interval)
            except OSError as exc:  # the manifest or a moved file hit a full disk: said as such, not a crash
                if not is_disk_full(exc):
                    raise
                raise disk_full_error(spec, workspace.models) from exc
        except FetchError as exc:
            log.error("%s", exc)
            status.update(spec.key, force=True, state="error", error=str(exc), retrying=not exc.permanent,
                          speed_bps=None, eta_s=None)
            temporary_failure = temporary_failure or not exc.permanent
    status.write()
    return EXIT_TEMPORARY if temporary_failure else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.fetch", description="Download the models in models.txt.")
    parser.add_argument("--models-file", type=Path, default=None, help="models.txt to read (default: the repo's)")
    parser.add_argument("--refresh", action="store_true", help="ask the hub again even when every file is complete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in HTTP_LOGGERS:  # a line per HTTP request of the hub client would bury the download's own lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # Progress goes to the status file and a log line every 30 s; tqdm bars would flood the log file.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = run(settings, args.models_file, refresh=args.refresh)
    if code == EXIT_TEMPORARY:
        time.sleep(30)  # supervisord restarts the fetcher at once: pause so a dead network is not hammered
    return code


if __name__ == "__main__":
    raise SystemExit(main())
