"""The caption model's lifecycle: loading in the background, status, one lock, a bounded queue, unloading.

`ModelManager` owns the one `Llama` object of the process. It loads in a background thread (at start
and on demand), serialises every call with one lock behind a bounded queue, and unloads on request
or after an idle time so training can have the GPU memory back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from caption_service.llm import build_llama, detect_device
from studio.registry import model_paths
from studio.settings import Settings

log = logging.getLogger(__name__)

LOAD_WAIT_S = 3.0  # a request finding the model unloaded waits this long for a reload before 503
# Images decoded at once, on threads of their own: a 80 MP PNG of 250 KB takes ~300 MB decoded, and sixteen parallel
# requests decoding on their own threads took 9 GB of the pod's memory (each thread's malloc arena keeps what it
# freed) before the queue refused half of them.
DECODE_SLOTS = 2
ERROR_RETRY_S = 5.0  # after a failed load, changed model files are tried again at most this often


class ServiceBusy(Exception):
    """The model cannot take the request now (loading, unloaded, failed or queue full): answer 503."""

    def __init__(self, message: str, retry_after: int = 2):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class CaptionTimeout(Exception):
    """The request ran past CAPTION_TIMEOUT_S: answer 504."""


class ModelLoadError(Exception):
    """The model files are missing or unusable; the message says which path and what to do."""


def _download_note(settings: Settings) -> str:
    """' (downloading, 63% (ETA 3 min))' while the model fetcher is still at work on the caption model, else ''."""
    try:
        from studio.model_status import download_state
    except ImportError:
        return ""
    try:
        state = download_state(settings, "caption")
    except Exception:  # a broken status file must never break health
        log.exception("could not read the model download status")
        return ""
    if not state:
        return ""
    message = state.get("message") or state.get("state")
    if not message and isinstance(state.get("percent"), int | float):
        message = f"downloading, {state['percent']:.0f}%"
    return f" ({message})" if message else ""


@dataclass
class Health:
    status: str
    reason: str | None
    model: str
    mmproj: str
    device: str
    load_seconds: float | None
    queue: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ModelManager:
    """The one model of this process: status, background loading, one lock and a bounded queue."""

    def __init__(self, settings: Settings, loader: Callable | None = None):
        self.settings = settings
        self.paths = model_paths(settings)
        # Imports llama_cpp now, before demo mode can import the gguf writer: with a CUDA build the
        # other order crashed in the model load (seen on an H100).
        self.device = detect_device()
        self._loader = loader or build_llama
        self._state = threading.Condition()  # guards every field below
        self._model_lock = threading.Lock()  # the model is not thread-safe: one call at a time
        self._llm = None
        self._status = "unloaded"
        self._reason: str | None = None
        self._load_seconds: float | None = None
        self._generation = 0  # bumped by unload: a load that finishes after it is thrown away
        self._last_attempt = 0.0
        self._failed_files: tuple | None = None  # the files as they were when loading failed
        self._waiting = 0
        self._running = 0
        self._last_used = time.monotonic()
        self._closed = threading.Event()
        self._monitor: threading.Thread | None = None
        self._load_thread: threading.Thread | None = None
        self._decoder = ThreadPoolExecutor(DECODE_SLOTS, thread_name_prefix="caption-decode")

    # lifecycle

    def start(self) -> ModelManager:
        self.load_async()
        if self.settings.caption_idle_unload_s > 0:
            self._monitor = threading.Thread(target=self._watch_idle, name="caption-idle", daemon=True)
            self._monitor.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self.unload()
        self._decoder.shutdown(wait=False, cancel_futures=True)

    def load_async(self) -> None:
        with self._state:
            self._load_async_locked()

    def _load_async_locked(self) -> None:
        if self._status in ("loading", "ready") or self._closed.is_set():
            return
        self._status, self._reason = "loading", None
        self._last_attempt = time.monotonic()
        self._failed_files = self._file_signature()
        thread = threading.Thread(target=self._load, args=(self._generation,), name="caption-load", daemon=True)
        self._load_thread = thread
        thread.start()

    def _load(self, generation: int) -> None:
        started = time.monotonic()
        try:
            llm = self._open()
        except ModelLoadError as exc:
            self._fail(generation, str(exc))
            return
        except Exception as exc:
            log.exception("loading the caption model failed")
            self._fail(generation, f"Loading the caption model failed ({type(exc).__name__}: {exc}); "
                                   "the caption service log has the details.")
            return
        seconds = time.monotonic() - started
        with self._state:
            if generation != self._generation or self._closed.is_set():
                stale = llm  # unloaded while loading: nobody wants this copy
            else:
                stale = None
                self._llm, self._status, self._reason = llm, "ready", None
                self._load_seconds = round(seconds, 3)
                self._last_used = time.monotonic()
                self._state.notify_all()
        if stale is not None:
            stale.close()
        else:
            log.info("caption model ready on %s in %.2f s: %s", self.device, seconds, self.paths.caption_model)

    def _file_signature(self) -> tuple:
        signature = []
        for path in (self.paths.caption_model, self.paths.caption_mmproj):
            try:
                stat = path.stat()
                signature.append((stat.st_size, stat.st_mtime_ns))
            except OSError:
                signature.append(None)
        return tuple(signature)

    def _retry_failed_load_locked(self) -> None:
        """After an error, load again once the files changed (a download finished, a file was replaced):
        a corrupt file that stays as it is is not reloaded on every request."""
        if (self._status == "error" and time.monotonic() - self._last_attempt >= ERROR_RETRY_S
                and self._file_signature() != self._failed_files):
            self._load_async_locked()

    def _fail(self, generation: int, reason: str) -> None:
        log.error("caption model not loaded: %s", reason)
        with self._state:
            if generation == self._generation:
                self._status, self._reason, self._load_seconds = "error", reason, None
                self._state.notify_all()

    def _open(self):
        settings, paths = self.settings, self.paths
        if settings.demo:
            from studio.demo import ensure_demo_models

            ensure_demo_models(settings, zimage=False)
        if settings.dev_model_path or settings.dev_mmproj_path:
            what_to_do = "point DEV_MODEL_PATH and DEV_MMPROJ_PATH at existing files"
        elif settings.demo:
            what_to_do = "the demo model build did not finish; the caption service log says why"
        else:
            what_to_do = "let the model download finish (models.txt) or set DEV_MODEL_PATH and DEV_MMPROJ_PATH"
        for label, path in (("caption model", paths.caption_model), ("vision projector", paths.caption_mmproj)):
            if not path.is_file():
                raise ModelLoadError(f"The {label} file {path} is missing{_download_note(settings)}: {what_to_do}.")
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise ModelLoadError("llama-cpp-python is not installed: run the install step of runpod_start.sh "
                                 "(it builds the wheel once).") from None
        try:
            return self._loader(settings, paths, self.device)
        except ValueError as exc:
            log.warning("llama.cpp could not load the model: %s", exc)
            broken_mmproj = "mtmd" in str(exc) or "Vision" in str(exc)
            which = (f"vision projector {paths.caption_mmproj}" if broken_mmproj
                     else f"caption model {paths.caption_model}")
            raise ModelLoadError(f"The {which} could not be loaded (corrupt, incomplete or not a Qwen2.5-VL GGUF): "
                                 "delete it and download it again, or point DEV_MODEL_PATH/DEV_MMPROJ_PATH "
                                 "at good files.") from None

    def unload(self, timeout: float | None = None) -> bool:
        """Free the model (waiting for a running caption or load); False if that did not end in time."""
        timeout = self.settings.caption_timeout_s + 5 if timeout is None else timeout
        until = time.monotonic() + timeout
        with self._state:
            self._generation += 1
            if self._status == "loading":
                self._status, self._reason = "unloaded", None
            loading = self._load_thread
        if loading is not None and loading is not threading.current_thread():
            # A load cannot be stopped half way: wait until it has thrown its copy away, so "unloaded" means the
            # memory is free (the worker and the express lane measure the GPU right after).
            loading.join(max(0.0, until - time.monotonic()))
            if loading.is_alive():
                return False
        if not self._model_lock.acquire(timeout=max(0.0, until - time.monotonic())):
            return False
        try:
            with self._state:
                llm, self._llm = self._llm, None
                # A failed load stays an error with its reason: the worker unloads before every training, and health
                # must still say which file is broken (and a request must not retry the same broken file).
                if llm is not None or self._status != "error":
                    self._status, self._reason, self._load_seconds = "unloaded", None, None
                self._state.notify_all()
            if llm is not None:
                llm.close()
                log.info("caption model unloaded")
        finally:
            self._model_lock.release()
        return True

    def _watch_idle(self) -> None:
        idle = self.settings.caption_idle_unload_s
        interval = max(0.05, min(5.0, idle / 4))
        while not self._closed.wait(interval):
            with self._state:
                due = (self._status == "ready" and self._waiting == 0 and self._running == 0
                       and time.monotonic() - self._last_used >= idle)
            if due:
                log.info("caption model idle for %.0f s: unloading", idle)
                self.unload(timeout=0.1)

    # requests

    def health(self) -> Health:
        with self._state:
            self._retry_failed_load_locked()
            return Health(status=self._status, reason=self._reason, model=self.paths.caption_model.name,
                          mmproj=self.paths.caption_mmproj.name, device=self.device,
                          load_seconds=self._load_seconds, queue=self._waiting + self._running)

    def _wait_ready(self, deadline: float) -> None:
        """Called with self._state held: start a load if needed and wait briefly for it."""
        if self._status == "unloaded":
            self._load_async_locked()
        self._retry_failed_load_locked()
        wait_until = min(deadline, time.monotonic() + LOAD_WAIT_S)
        while self._status == "loading" and time.monotonic() < wait_until:
            self._state.wait(wait_until - time.monotonic())
        if self._status == "ready":
            return
        if self._status == "error":
            raise ServiceBusy(f"The caption model is not available: {self._reason}", retry_after=30)
        raise ServiceBusy("The caption model is loading; try again in a few seconds.", retry_after=5)

    def check_queue(self) -> None:
        """ServiceBusy when the queue is full, before a request spends memory and time decoding its image."""
        with self._state:
            if self._waiting >= self.settings.caption_queue_size:
                raise ServiceBusy(f"The caption queue is full ({self._waiting} waiting); try again shortly.",
                                  retry_after=2)

    def decode(self, prepare: Callable, deadline: float):
        """`prepare()` (an image decode) on one of DECODE_SLOTS decoding threads; CaptionTimeout past the deadline."""
        future = self._decoder.submit(prepare)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            future.cancel()
            raise CaptionTimeout(f"The image was not decoded within {self.settings.caption_timeout_s:g} s because "
                                 "the service was busy; try again.") from None

    def run(self, work: Callable, deadline: float):
        """Call `work(llm, deadline)` with the model, under the lock; raises ServiceBusy or CaptionTimeout."""
        with self._state:
            self._wait_ready(deadline)
            if self._waiting >= self.settings.caption_queue_size:
                raise ServiceBusy(f"The caption queue is full ({self._waiting} waiting); try again shortly.",
                                  retry_after=2)
            self._waiting += 1
        try:
            acquired = self._model_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            with self._state:
                self._waiting -= 1
        if not acquired:
            raise CaptionTimeout(f"The caption did not start within {self.settings.caption_timeout_s:g} s "
                                 "because the model was busy; try again.")
        try:
            with self._state:
                llm = self._llm
                if llm is None:  # unloaded while this request waited
                    raise ServiceBusy("The caption model was just unloaded; try again.", retry_after=1)
                self._running += 1
            try:
                return work(llm, deadline)
            finally:
                with self._state:
                    self._running -= 1
                    self._last_used = time.monotonic()
        finally:
            self._model_lock.release()
