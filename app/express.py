"""The express lane: one chain of the jobs the two apps make by hand (import, caption, export, train).

The chain is an `express` row in the job store; its stages are ordinary jobs with `parent_id` pointing
at it, so everything is state on disk: a page reload or a pod restart finds the chain where it was,
and `advance` moves it on. The express row's `phase` names the stage it waits for:

    upload -> import -> caption -> export -> train -> done

A stage that completes starts the next; one interrupted by a restart is started again (at most
MAX_RELAUNCHES times; each stage is safe to run twice); one that fails or is stopped stops the chain
with its message, and `retry` runs that stage again. Nothing the user uploaded is removed on failure.
"""

from __future__ import annotations

import logging
import threading
import time

import requests
from flask import Flask

from app import context, express_captions
from app.express_plan import Gpu, check_gpu, make_plan
from app.express_rules import ExpressInputError, caption_options
from app.frame_choice import in_config
from app.store import NotFound
from studio.auth import bearer_header
from studio.jobs import ACTIVE, Job, JobStateError
from studio.web import ApiError

log = logging.getLogger(__name__)

STAGES = ("import", "caption", "export", "train")
STAGE_MESSAGES = {"import": "Checking the uploaded images.", "caption": "Captioning every image.",
                  "export": "Exporting the dataset for training.", "train": "Training: waiting for the worker."}
MAX_RELAUNCHES = 3
DATASET_DELETED = "Stopped: its dataset was deleted."
TICK_S = 1.0


class ExpressError(Exception):
    """A stage cannot start; the chain stops with this message (the user can retry)."""


def stages_of(express: Job) -> dict[str, Job]:
    """The newest job of each stage of this chain."""
    found: dict[str, Job] = {}
    for job in context.jobs().list(parent_id=express.id, limit=100):
        found.setdefault(job.kind, job)
    return found


def _settings(express: Job) -> dict:
    return dict(express.config)


def _set_phase(express: Job, phase: str, message: str) -> Job:
    context.jobs().progress(express.id, {"phase": phase, "message": message,
                                         "done": STAGES.index(phase) if phase in STAGES else len(STAGES)})
    return context.jobs().get(express.id)


# -- starting each stage ---------------------------------------------------------------------------
def _start_import(express: Job, relaunch: bool) -> Job | None:
    from app.uploads import import_from_sessions, session_exists
    from app.url_import import start_url_import

    dataset = context.dataset(express.dataset)
    link = _settings(express).get("url")
    if link:  # the files are a link: the pod downloads them (again, after a failed try)
        try:
            return start_url_import(dataset, link, express.id, skip_known=relaunch,
                                    limit=_settings(express).get("limit"), frames=_settings(express).get("frames"),
                                    spread=bool(_settings(express).get("spread")))
        except ApiError as exc:
            raise ExpressError(f"The link cannot be imported: {exc.message}") from None
    sessions = [sid for sid in _settings(express).get("sessions") or [] if session_exists(dataset, sid)]
    if not sessions:
        return None  # uploaded to the dataset directly, or imported already (a finished import removes them)
    try:
        return import_from_sessions(dataset, sessions, express.id, skip_known=relaunch,
                                    frames=_settings(express).get("frames"))
    except ApiError as exc:
        raise ExpressError(f"The upload cannot be imported: {exc.message}") from None


def _start_caption(express: Job, relaunch: bool) -> Job:
    from app.autocaption import start_caption_job

    dataset = context.dataset(express.dataset)
    options = {**caption_options(_settings(express)["kind"]), "names": dataset.image_names()}
    try:
        return start_caption_job(dataset, options, parent_id=express.id)
    except ApiError as exc:
        why = exc.message.removeprefix("Auto-caption cannot start: ")  # said once: "Captioning cannot start: ..."
        raise ExpressError(f"Captioning cannot start: {why}") from None


def _start_export(express: Job, relaunch: bool) -> Job:
    from app.export import start_export

    try:
        return start_export(context.dataset(express.dataset), _settings(express)["export_name"], express.id)
    except ApiError as exc:
        raise ExpressError(f"The export cannot start: {exc.message}") from None


def _gpu() -> Gpu | None:
    from trainer.validation import detect_gpu, free_gpu_memory_gb

    found = detect_gpu()
    if found is None:
        return None
    free = free_gpu_memory_gb()
    return Gpu(found.name, found.memory_gb, free if free is not None else found.memory_gb)


def gpu_precheck() -> None:
    """Before anything is uploaded: is there a GPU that any memory preset fits on?"""
    check_gpu(_gpu())


def _unload_caption_model() -> None:
    """Free the caption model's GPU memory before measuring what training can have."""
    settings = context.settings()
    headers = {"Authorization": bearer_header(settings.password)} if settings.password else {}
    try:
        requests.post(f"{settings.caption_url}/unload", json={}, headers=headers, timeout=10)
    except requests.RequestException as exc:
        log.info("caption service did not unload (%s)", exc)


def plan_for(express: Job):
    """The training plan from the images the export holds (duplicates are left out of both)."""
    from app.export import export_selection
    from trainer.dataset_checks import image_header

    dataset = context.dataset(express.dataset)
    meta = dataset.meta()
    names, _ = export_selection(meta)
    sizes = [(meta["images"][name].get("width", 0), meta["images"][name].get("height", 0)) for name in names]
    captions = [dataset.read_caption(name) or "" for name in names]
    transparent = sum(bool((image_header(dataset.image_path(name)) or (0, 0, False))[2]) for name in names)
    flags = {name: meta["images"][name].get("flags") or {} for name in names}
    soft = tuple(name for name in names if flags[name].get("soft"))
    small = tuple((name, *sizes[index]) for index, name in enumerate(names) if flags[name].get("small"))
    similar = tuple((name, str(flags[name]["similar_to"])) for name in names if flags[name].get("similar_to"))
    settings = _settings(express)
    demo = context.settings().demo
    if not demo:
        _unload_caption_model()
    plan = make_plan(name=settings["lora_name"], trigger=settings["trigger_word"], kind=settings["kind"],
                     sizes=sizes, captions=captions, gpu=None if demo else _gpu(), demo=demo, transparent=transparent,
                     soft=soft, small=small, similar=similar, preserve=bool(settings.get("preserve")))
    plan.warnings.extend(filter(None, [express_captions.plan_warning(express)]))  # images on the trigger word alone
    return plan


def _start_train(express: Job, relaunch: bool) -> Job:
    from trainer.submit import JobInvalid, submit_job

    export = stages_of(express).get("export")
    try:
        plan = plan_for(express)
    except ExpressInputError as exc:
        raise ExpressError(exc.message) from None
    context.jobs().update(express.id, config={**_settings(express), "plan": plan.to_dict()})
    payload = {"name": plan.name, "dataset": _settings(express)["export_name"], "config": plan.config,
               "dataset_version": export.dataset_version if export else None}
    try:
        job, _, report = submit_job(context.settings(), context.jobs(), payload, parent_id=express.id)
    except JobInvalid as exc:
        raise ExpressError(str(exc)) from None
    disk = [w["message"] for w in report.warnings if w["field"] == "keep_last"]  # it may not fit the volume
    if disk:
        plan.warnings.extend(disk)
        context.jobs().update(express.id, config={**_settings(express), "plan": plan.to_dict()})
    return job


STARTERS = {"import": _start_import, "caption": _start_caption, "export": _start_export, "train": _start_train}


# -- moving the chain on ---------------------------------------------------------------------------
def _launch(express: Job, stage: str, relaunch: bool = False) -> Job:
    """Start `stage` (or move past it when there is nothing to do) and record the phase. A stage whose model
    is still downloading starts anyway: its job waits for the download and says so."""
    express = _set_phase(express, stage, STAGE_MESSAGES[stage])
    try:
        job = STARTERS[stage](express, relaunch)
    except ExpressError as exc:
        return context.jobs().finish(express.id, "failed", error=str(exc), resumable=True)
    if job is None:
        return _after(express, stage)
    return context.jobs().get(express.id)


def _after(express: Job, stage: str) -> Job:
    """`stage` completed: check what it made, then start the next stage or finish the chain."""
    if stage == "import":
        images = len(context.dataset(express.dataset).image_names())
        if images == 0:
            return context.jobs().finish(express.id, "failed", resumable=True, error=_no_images(express))
    if stage == "caption" and express_captions.holding(express, stages_of(express)["caption"]):
        return context.jobs().get(express.id)  # images without a caption: the user chooses (or it times out)
    index = STAGES.index(stage)
    if index + 1 < len(STAGES):
        return _launch(express, STAGES[index + 1])
    train = stages_of(express)["train"]
    context.jobs().progress(express.id, {"phase": "done", "done": len(STAGES)})
    return context.jobs().finish(express.id, "completed", message=train.message or "Finished.",
                                 result={"train_job": train.id, "lora_path": train.lora_path})


def _no_images(express: Job) -> str:
    """Why the upload gave no image to train on: what the import left out and why, the first few by name."""
    imported = stages_of(express).get("import")
    skipped = [entry for entry in ((imported.result or {}).get("skipped") or []) if isinstance(entry, dict)] \
        if imported else []
    said = "; ".join(f"{entry.get('name')}: {entry.get('reason')}" for entry in skipped[:4])
    more = f" and {len(skipped) - 4} more" if len(skipped) > 4 else ""
    why = f" ({said}{more})" if said else ""
    return (f"No usable images were found in the upload{why}. Add photos (.jpg, .png, .heic, ...), a ZIP of them "
            "or a video.")


# One chain moves one step at a time: the driver thread and a page's request may both look at it.
_advancing = threading.Lock()


def advance(express: Job) -> Job:
    """Look at the current stage and act on it; returns the express row as it is now."""
    with _advancing:
        express = context.jobs().get(express.id)  # as it is now, not as the caller last saw it
        if express.status != "running" or express.phase in (None, "upload"):
            return express
        return _advance(express)


def _advance(express: Job) -> Job:
    try:
        context.dataset(express.dataset)
    except NotFound:
        return context.jobs().finish(express.id, "stopped", message=DATASET_DELETED)
    stage = express.phase
    job = stages_of(express).get(stage)
    if job is None:
        return _launch(express, stage)
    if job.status in ACTIVE:
        return express
    if job.status == "completed":
        return _after(express, stage)
    if job.status == "interrupted":
        relaunches = int(express.details.get("relaunches", 0)) + 1
        if relaunches > MAX_RELAUNCHES:
            return context.jobs().finish(express.id, "failed", resumable=True,
                                         error=f"The {stage} stage was interrupted {relaunches - 1} times; press "
                                               "Retry to run it again.")
        context.jobs().progress(express.id, {"relaunches": relaunches})
        if stage == "train":
            return express  # the training worker continues an interrupted job by itself
        return _launch(express, stage, relaunch=True)
    if job.status == "stopped":
        return context.jobs().finish(express.id, "stopped", resumable=True,
                                     message=f"Stopped during {stage}: press Retry to go on from there.")
    return context.jobs().finish(express.id, "failed", resumable=True,
                                 error=f"{stage.capitalize()} failed: {job.error or job.message}")


def dataset_deleted(dataset_id: str) -> None:
    """Its dataset is being deleted: every run on it stops now, before its stage jobs are stopped, so the run
    says why ("Stopped during caption" would send the user to a Retry that cannot work)."""
    with _advancing:  # not while the driver is moving a chain on
        for run in context.jobs().list(tuple(ACTIVE), kind="express", dataset=dataset_id):
            context.jobs().finish(run.id, "stopped", message=DATASET_DELETED)


def begin(express: Job, sessions: list[str], url: str | None = None, limit: int | None = None,
          frames: dict | None = None, spread: bool = False) -> Job:
    """The upload is done, or a link given (first time, or again after an import found no usable images):
    import it (of a link, at most `limit` images, the first or `spread` over it; of videos, the `frames` asked
    for: app.frame_choice)."""
    store = context.jobs()
    with _advancing:
        express = store.get(express.id)
        uploading = express.status == "running" and express.phase == "upload"
        if not uploading and not (express.status == "failed" and express.phase == "import"):
            raise JobStateError("This express run has already started.")
        store.update(express.id, config={**express.config, "sessions": sessions, "url": url,
                                                 "limit": limit, "spread": spread, "frames": None,
                                                 **in_config(frames)})
        if not uploading:
            store.resume(express.id, "Checking the uploaded images.")
            store.start(express.id, None)
        return _launch(store.get(express.id), STAGES[0])


def retry(express: Job) -> Job:
    """Run the stage that failed or was stopped again, and go on from there."""
    with _advancing:
        return _retry(context.jobs().get(express.id))


def _retry(express: Job) -> Job:
    store = context.jobs()
    if express.status not in ("failed", "stopped", "interrupted"):
        raise JobStateError(f"This express run is {express.status}; only a failed or stopped one can be retried.")
    if not express.resumable:  # its dataset was deleted, or its files never came: nothing to go on with
        raise JobStateError(f"This express run cannot be retried. {express.message or ''}".strip())
    if express.phase == "upload":  # stopped before its files came: it waits for them again
        store.resume(express.id, "Waiting for the upload.")
        store.start(express.id, None)
        return store.get(express.id)
    stage = express.phase if express.phase in STAGES else "import"
    job = stages_of(express).get(stage)
    express = store.resume(express.id, f"{stage.capitalize()}: trying again.")
    store.start(express.id, None)
    store.progress(express.id, {"relaunches": 0})
    if stage == "train" and job is not None and job.status in ("failed", "stopped", "interrupted"):
        store.resume(job.id, "Waiting for the worker (continues from the last checkpoint).")
        return store.get(express.id)
    return _launch(store.get(express.id), stage, relaunch=True)


def choose_uncaptioned(express: Job, choice: str) -> Job:
    """Caption the images left without a caption again, or train anyway (app.express_captions)."""
    with _advancing:
        express_captions.choose(context.jobs().get(express.id), choice)
    return advance(express)


def stop(express: Job) -> Job:
    with _advancing:  # not while the driver starts the next stage: that one would run on, unseen
        return _stop(context.jobs().get(express.id))


def _stop(express: Job) -> Job:
    store = context.jobs()
    job = stages_of(express).get(express.phase) if express.phase in STAGES else None
    if job is not None and job.status in ACTIVE:
        store.request_stop(job.id, reason="Stopping: you asked.")
        return store.get(express.id)
    if express.status in ACTIVE:
        return store.finish(express.id, "stopped", resumable=True, message="Stopped before the next stage.")
    raise JobStateError(f"This express run is already {express.status}.")


class ExpressDriver:
    """Advances every running chain about once a second in a background thread of the web process, and at once when
    a stage this process runs ends (wake). It runs only while a chain runs, and starts again when one is created or
    found at start-up."""

    def __init__(self, app: Flask):
        self.app = app
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._woken = threading.Event()

    def wake(self) -> None:
        """Advance the chains now: a stage of this process (import, captions, export) just ended, and the next one
        starts at once instead of at the next tick."""
        self._woken.set()

    def ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="express-driver", daemon=True)
                self._thread.start()

    def tick(self) -> int:
        """Advance every running chain once; returns how many still run."""
        with self.app.app_context():
            running = context.jobs().list(("running",), kind="express", limit=1000)
            for express in running:
                try:
                    advance(express)
                except Exception:  # one broken chain must not stop the others
                    log.exception("express %s could not advance", express.id)
            return context.jobs().count(("running",), kind="express", work=True)  # not those waiting for files

    def _loop(self) -> None:
        idle_since = time.monotonic()
        while True:
            if self.tick():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 30:
                with self._lock:
                    self._thread = None
                return
            self._woken.wait(TICK_S)
            self._woken.clear()
