"""Progress of the model fetcher: the status file every page reads, and a meter for speed and ETA."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from studio.atomic import atomic_write_json
from studio.models_txt import ModelSpec

log = logging.getLogger("studio.fetch")


class StatusFile:
    """Progress of every model, written atomically (at most every `interval` seconds unless forced)."""

    def __init__(self, path: Path, specs: list[ModelSpec], demo: bool, interval: float = 1.0):
        self.path = path
        self.demo = demo
        self.interval = interval
        self.lock = threading.Lock()
        self.last_write = 0.0
        self.write_failed = False  # the last write failed (logged once, not on every update)
        self.models = {
            spec.key: {
                "key": spec.key, "name": spec.name, "repo": spec.repo, "revision": spec.revision,
                "target": spec.target, "state": "pending", "bytes_done": 0, "bytes_total": None,
                "percent": 0.0, "speed_bps": None, "eta_s": None, "files_done": 0, "files_total": None,
                "error": None, "stalled_s": None,
            }
            for spec in specs
        }

    def overall(self) -> str:
        states = {entry["state"] for entry in self.models.values()}
        if states <= {"ready"}:
            return "ready"
        if states & {"pending", "resolving", "downloading", "verifying", "building"}:
            return "downloading"
        return "error"

    def update(self, key: str, force: bool = False, **fields) -> None:
        with self.lock:
            entry = self.models[key]
            entry.update(fields)
            if entry["state"] != "downloading":
                entry["stalled_s"] = None  # only a download in progress can be stalled
            done, total = entry["bytes_done"], entry["bytes_total"]
            if entry["state"] == "ready":
                entry["percent"], entry["eta_s"] = 100.0, 0
            elif total:
                entry["percent"] = round(min(100.0, 100.0 * done / total), 1)
            now = time.monotonic()
            if force or now - self.last_write >= self.interval:
                self._write()
                self.last_write = now

    def write(self) -> None:
        with self.lock:
            self._write()

    def _write(self) -> None:
        """Never raises: a status file that cannot be written must not stop the downloads (or the progress meter's
        thread). On a full disk the file is rewritten in place, which needs no new blocks, so the page can still
        say why the download stopped."""
        state = {
            "state": self.overall(),
            "demo": self.demo,
            "pid": os.getpid(),
            "updated_at": time.time(),
            "models": list(self.models.values()),
        }
        try:
            atomic_write_json(self.path, state)
        except OSError as exc:
            if self._write_in_place(state):
                self.write_failed = False
                return
            if not self.write_failed:
                log.warning("could not write the download status %s: %s", self.path, exc)
            self.write_failed = True
        else:
            self.write_failed = False

    def _write_in_place(self, state: dict) -> bool:
        data = (json.dumps(state, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
        try:
            with open(self.path, "r+b") as handle:
                handle.write(data)
                handle.truncate()
        except OSError:
            return False
        return True


def counting_bar(on_bytes):
    """A tqdm class for huggingface-hub's downloads that hands every block's byte count to `on_bytes` (which may
    raise, e.g. to stop a download at its next block)."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class CountingBar(hub_tqdm):
        def update(self, n=1):
            if n:
                on_bytes(n)
            return super().update(n)

    return CountingBar


STALL_AFTER_S = 20.0  # no byte for this long while downloading: the banner says "no data for ..." instead of a speed


class ProgressMeter(threading.Thread):
    """Samples bytes on disk (done files + partial downloads) to report speed and ETA for one model.

    Speed counts only bytes that arrive: a file found complete on disk (a hash check after a restart) adds to the
    bytes done at once and is no download speed. A download that gets no data for STALL_AFTER_S shows speed 0, no
    ETA and `stalled_s`, the seconds since the last byte."""

    def __init__(self, status: StatusFile, key: str, target_dir: Path, interval: float):
        super().__init__(daemon=True, name=f"progress-{key}")
        self.status, self.key, self.target_dir, self.interval = status, key, target_dir, interval
        self.lock = threading.Lock()  # done_bytes and current_file_bytes change together for the sampler
        self.done_bytes = 0  # bytes of files finished so far in this model
        self.found_bytes = 0  # of those, the bytes that were on disk already (checked, not downloaded)
        self.current_file_bytes = 0  # what huggingface-hub's progress callbacks reported for the current file
        self.stopped = threading.Event()
        self.speed: float | None = None

    def start_file(self) -> None:
        self.current_file_bytes = 0

    def file_done(self, size: int, downloaded: bool) -> None:
        """One file complete: its bytes move from 'current' to 'done' in one step (no sample sees them twice)."""
        with self.lock:
            self.done_bytes += size
            if not downloaded:
                self.found_bytes += size
            self.current_file_bytes = 0

    def verifying(self) -> None:
        """The current file is complete and being hashed: no bytes arrive meanwhile, and that is no stall."""
        self.status.update(self.key, force=True, state="verifying")

    def progress_bar_class(self):
        """A tqdm class for huggingface-hub that counts bytes here (Xet transfers may not grow a file on disk)."""

        def count(n: int) -> None:
            self.current_file_bytes += n

        return counting_bar(count)

    def partial_bytes(self) -> int:
        total = 0
        download_dir = self.target_dir / ".cache" / "huggingface" / "download"
        for path in download_dir.rglob("*.incomplete"):
            try:
                total += path.stat().st_size
            except OSError:
                continue  # finished and moved between listing and stat
        return total

    def current(self) -> tuple[int, int]:
        """(bytes of this model on disk or arrived, of which found on disk rather than downloaded)."""
        partial = self.partial_bytes()
        with self.lock:
            return self.done_bytes + max(partial, self.current_file_bytes), self.found_bytes

    def run(self) -> None:
        from studio.model_status import describe

        last_arrived, last_time = None, time.monotonic()
        last_log = last_moved = time.monotonic()
        while not self.stopped.wait(self.interval):
            current, found = self.current()
            arrived = current - found  # what the network brought: the only thing speed is made of
            now = time.monotonic()
            if last_arrived is not None and now > last_time:
                rate = max(0.0, (arrived - last_arrived) / (now - last_time))
                # Smooth the rate so the ETA does not jump with every sample.
                self.speed = rate if self.speed is None else 0.7 * self.speed + 0.3 * rate
            if last_arrived is None or arrived > last_arrived \
                    or self.status.models[self.key]["state"] != "downloading":
                last_moved = now
            last_arrived, last_time = arrived, now
            stalled = now - last_moved if now - last_moved >= STALL_AFTER_S else None
            if stalled is not None:
                self.speed = 0.0  # not a fading average of what came before the silence
            total = self.status.models[self.key]["bytes_total"] or 0
            eta = round((total - current) / self.speed) if self.speed and total > current else None
            self.status.update(self.key, bytes_done=min(current, total) if total else current,
                               speed_bps=round(self.speed) if self.speed is not None else None, eta_s=eta,
                               stalled_s=round(stalled) if stalled is not None else None)
            if now - last_log >= 30:  # a line in the fetch log now and then, for `supervisorctl tail fetch`
                last_log = now
                log.info("%s", describe(self.status.models[self.key]))

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
