"""Bulk auto-caption: the manager's side of the caption service (HTTP contract in the design notes).

The run works on a snapshot of every caption taken when it starts; right before writing, under the
dataset lock, it re-reads the caption and skips any image the user edited meanwhile, so an edit
made during a run is never lost. It also checks that the picture is still the one it sent: an image
cropped, rotated or mirrored while its caption was made is captioned again (once; edited again, it is
left uncaptioned and named in the job's errors), so no caption describes a picture that is gone.

A service that fails image after image (errors, timeouts, answers that are not a caption) stops the run after
SERVICE_FAILURES_IN_A_ROW of them, with the reason: a wedged service would otherwise take every image's full timeout,
on a GPU rented by the hour. An image the service refuses (a 4xx answer) is that image's failure only.
"""

from __future__ import annotations

import base64
import time

import requests
from flask import Blueprint, jsonify

from app import context, imaging
from app.captions import CAPTION_MAX, save_undo, set_caption
from app.store import Dataset, rev_of, text_hash
from studio.auth import bearer_header
from studio.job_reporter import JobReporter
from studio.jobs import ACTIVE, JobError
from studio.model_status import download_state, waiting_for
from studio.settings import Settings
from studio.text import name_list, plural
from studio.web import ApiError, json_body

bp = Blueprint("autocaption", __name__)
MODES = ("skip", "overwrite", "append", "prepend")
STYLES = ("detailed", "short", "tags", "custom")
CONNECT_RETRIES = 3
LOADING_WAIT_S = 900.0
CAPTION_MODEL = (("caption", "caption model"),)  # what a caption run needs downloaded (models.txt key)
DOWNLOAD_POLL_S = 2.0
SERVICE_FAILURES_IN_A_ROW = 3
MAX_TOKENS = 1024  # what the caption service takes (caption_service.llm.MAX_NEW_TOKENS): more fails every image
UNDO_SAVE_EVERY = 20  # captions written between two saves of the run's undo (one that replaced a caption: at once)
UNDO_SAVE_S = 15.0
READ_SLACK_S = 10.0  # what an answer may take beyond the service's own time limit (CAPTION_TIMEOUT_S)


def _headers(settings: Settings) -> dict:
    return {"Authorization": bearer_header(settings.password)} if settings.password else {}


def service_health(settings: Settings) -> dict:
    """What the page shows about the caption service: reachable or not, loading, ready..."""
    url = settings.caption_url
    try:
        response = requests.get(f"{url}/health", headers=_headers(settings), timeout=3)
        data = response.json() if response.ok else {}
    except (requests.RequestException, ValueError):
        return {"reachable": False, "status": "down", "url": url,
                "reason": f"The caption service is not answering at {url}. It may still be starting; "
                          "check the caption service log if this lasts."}
    if not data:
        return {"reachable": False, "status": "error", "url": url,
                "reason": f"The caption service at {url} answered HTTP {response.status_code}."}
    waiting = waiting_for(settings, CAPTION_MODEL) if data.get("status") != "ready" else None
    if waiting:  # not an error: a run started now waits for the download
        data = {**data, "status": "downloading", "reason": waiting,
                "download": (download_state(settings, CAPTION_MODEL[0][0]) or {}).get("message")}
    return {"reachable": True, "url": url, **data}


class ServiceFailure(ValueError):
    """The service failed on an image for a reason of its own (an error, a timeout, an answer that is no caption)."""


class CaptionClient:
    def __init__(self, settings: Settings, job: JobReporter):
        self.settings = settings
        self.job = job
        self.session = requests.Session()
        self.session.headers.update(_headers(settings))
        self.failures_in_a_row = 0

    def caption(self, image_bytes: bytes, options: dict) -> str:
        """The caption for one image; raises ValueError for a per-image failure, JobError if the service is gone or
        failed on SERVICE_FAILURES_IN_A_ROW images in a row."""
        try:
            text = self._caption(image_bytes, options)
        except ServiceFailure as exc:
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= SERVICE_FAILURES_IN_A_ROW:
                raise JobError(f"The caption service failed on {self.failures_in_a_row} images in a row (the last: "
                               f"{exc}): the run was stopped. Check the caption service and its log, then start "
                               "the run again; the captions made so far are kept.") from None
            raise
        self.failures_in_a_row = 0
        return text

    def _caption(self, image_bytes: bytes, options: dict) -> str:
        payload = {"image": base64.b64encode(image_bytes).decode("ascii"), "style": options["style"],
                   "prompt": options["prompt"], "trigger_word": ""}
        if options.get("max_tokens") is not None:
            payload["max_tokens"] = options["max_tokens"]
        connect_failures = 0
        waited = 0.0
        while True:
            self.job.check_stop()
            try:
                response = self.session.post(f"{self.settings.caption_url}/caption", json=payload,
                                             timeout=(5, self.settings.caption_timeout_s + READ_SLACK_S))
            except requests.ConnectTimeout:
                raise ServiceFailure("the caption service did not take the connection") from None
            except requests.Timeout:
                raise ServiceFailure("the caption service took too long for this image") from None
            except requests.ConnectionError:
                connect_failures += 1
                if connect_failures > CONNECT_RETRIES:
                    raise JobError(f"The caption service stopped answering at {self.settings.caption_url}: "
                                   "the run was stopped. Start it again when the service is up.") from None
                self.sleep(2.0)
                continue
            if response.status_code == 503:
                health = service_health(self.settings)
                if health.get("status") == "error":  # a model that failed to load: waiting would not bring it
                    reason = health.get("reason") or "it reports an error."
                    raise JobError(f"The caption service cannot caption: {reason} The run was stopped; the "
                                   "captions made so far are kept.")
                delay = _retry_after(response)
                waited += delay
                if waited > LOADING_WAIT_S:
                    raise JobError("The caption service stayed busy or loading for too long: try again later.")
                self.job.update(message=f"Caption service busy or loading the model: waiting {delay:.0f} s")
                self.sleep(delay)
                continue
            if response.status_code == 200:
                return _caption_text(response)
            if response.status_code >= 500 or response.status_code in (401, 403, 404):  # the service's trouble
                raise ServiceFailure(_error_text(response))
            raise ValueError(_error_text(response))

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.job.check_stop()
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _caption_text(response) -> str:
    """The caption in a 200 answer; ServiceFailure when the answer holds none (a proxy's page, a null)."""
    try:
        text = response.json()["caption"]
    except (ValueError, KeyError, TypeError):
        raise ServiceFailure("the caption service sent an unreadable answer") from None
    if not isinstance(text, str):
        raise ServiceFailure(f"the caption service sent an answer without caption text (its caption: "
                             f"{str(text)[:40]})")
    text = text.strip()
    if not text:
        raise ValueError("the caption service returned an empty caption")
    if len(text) > CAPTION_MAX:
        raise ValueError(f"the caption service sent a caption of {len(text):,} characters, more than a caption "
                         f"holds ({CAPTION_MAX:,}): try a lower max_tokens")
    return text


def _retry_after(response) -> float:
    try:
        return max(0.5, min(10.0, float(response.headers.get("Retry-After", 2))))
    except ValueError:
        return 2.0


def _error_text(response) -> str:
    try:
        detail = response.json().get("error")
    except (ValueError, AttributeError):  # not JSON (a proxy's HTML page), or JSON without fields
        detail = None
    detail = detail if isinstance(detail, str) else None
    return f"caption service answered {response.status_code}" + (f": {detail[:300]}" if detail else "")


def combine(mode: str, old: str | None, new: str, style: str) -> str:
    old = (old or "").strip()
    joiner = ", " if style == "tags" else " "
    if mode == "append" and old:
        return f"{old}{joiner}{new}"
    if mode == "prepend" and old:
        return f"{new}{joiner}{old}"
    return new


def picture_version(dataset: Dataset, name: str) -> tuple | None:
    """What changes when an image's picture does (an edit, a revert): its record's rev and its file on disk (an
    edit replaces the file, never writes into it); None when the file is gone."""
    try:
        stat = dataset.image_path(name).stat()
    except FileNotFoundError:
        return None
    record = dataset.meta()["images"].get(name) or {}
    return rev_of(record), stat.st_ino, stat.st_mtime_ns, stat.st_size


EDITED_PICTURE = "the picture was edited while it was captioned: caption it again"
REMOVED = "the image was removed during the run"


def caption_one(job: JobReporter, client: CaptionClient, dataset: Dataset, settings: Settings, options: dict,
                name: str, caption_seen: str | None) -> tuple[str, str | None, str | None]:
    """Captions one image and writes the caption under the dataset lock, unless its caption changed since
    `caption_seen` (its hash when the run started) or its picture changed since it was sent: then it is captioned
    again, once. Returns (what happened: "captioned", "kept" the user's caption, "changed" picture, "failed";
    the caption it replaced; the caption it wrote)."""
    path = dataset.image_path(name)
    for attempt in (1, 2):
        seen = picture_version(dataset, name)  # before the file is read: an edit after this is noticed below
        try:
            text = client.caption(imaging.encode_for_caption(path, settings.caption_max_pixels), options)
        except (ValueError, OSError) as exc:
            job.add_error(name, str(exc) if isinstance(exc, ValueError) else REMOVED if not path.is_file()
                          else "the image could not be read")
            return "failed", None, None
        with dataset.lock():
            current = dataset.read_caption(name)
            if not path.is_file():
                job.add_error(name, REMOVED)
                return "failed", None, None
            if text_hash(current) != caption_seen:
                return "kept", None, None  # the user's edit wins
            if picture_version(dataset, name) == seen:
                set_caption(dataset, name, combine(options["mode"], current, text, options["style"]))
                return "captioned", current, dataset.read_caption(name)
        # cropped, rotated or mirrored meanwhile: the caption describes a picture that is gone
        if attempt == 1:
            job.update(message=f"{name} was edited while it was captioned: captioning it again")
    job.add_error(name, EDITED_PICTURE)
    return "changed", None, None


def run_captions(job: JobReporter, dataset: Dataset, settings: Settings, options: dict) -> dict:
    names = options["names"]
    snapshot = {name: text_hash(dataset.read_caption(name)) for name in names}
    if options["mode"] == "skip":
        names = [n for n in names if not (dataset.read_caption(n) or "").strip()]
    client = CaptionClient(settings, job)
    while (health := service_health(settings)).get("status") == "downloading":  # started before the model came
        job.update(force=True, total=len(names),
                   message=f"{health['reason']} Captioning starts by itself when it is ready.")
        client.sleep(DOWNLOAD_POLL_S)
    job.update(force=True, total=len(names), done=0, message=f"Captioning {plural(len(names), 'image')}")
    before: dict[str, str | None] = {}
    after: dict[str, str | None] = {}  # as each caption was written: an edit made later in the run is no undo's
    captioned, edited, changed = 0, [], []
    unsaved, saved_at = 0, time.monotonic()
    # its undo, saved as it goes, never replaces a bulk change made during the run
    run = (getattr(job, "id", None) or "auto-caption", time.time())
    try:
        for index, name in enumerate(names, start=1):
            job.check_stop()
            job.update(current=name, message=f"Captioning {name}")
            outcome, replaced, written = caption_one(job, client, dataset, settings, options, name, snapshot[name])
            if outcome == "captioned":
                before[name], after[name] = replaced, written
                captioned, unsaved = captioned + 1, unsaved + 1
                # the undo is kept up to date as the run goes (at once when it replaced a caption someone wrote), so
                # a killed worker or a pod restart leaves a run that can still be undone
                if replaced or unsaved >= UNDO_SAVE_EVERY or time.monotonic() - saved_at >= UNDO_SAVE_S:
                    save_undo(dataset, "auto-caption", before, after, run)
                    unsaved, saved_at = 0, time.monotonic()
            elif outcome == "kept":
                edited.append(name)
            elif outcome == "changed":
                changed.append(name)
            job.update(done=index, captioned=captioned, skipped_edited=len(edited))
    finally:
        save_undo(dataset, "auto-caption", before, after, run)
    failed = len(job.errors) - len(changed)
    message = f"Captioned {captioned} of {plural(len(names), 'image')}"
    if edited:
        message += f"; kept {plural(len(edited), 'caption')} you edited during the run"
    if changed:
        message += (f"; {name_list(changed)} was edited while it was captioned: caption it again" if len(changed) == 1
                    else f"; {name_list(changed)} were edited while they were captioned: caption them again")
    if failed:
        message += f"; {failed} failed"
    job.update(message=message + ".")
    return {"captioned": captioned, "skipped_edited": edited, "skipped_changed": changed, "failed": failed}


def options_from(body: dict, dataset: Dataset) -> dict:
    mode = body.get("mode", "skip")
    style = body.get("style", "detailed")
    prompt = body.get("prompt") or ""
    if mode not in MODES:
        raise ApiError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.", 422)
    if style not in STYLES:
        raise ApiError(f"Unknown style {style!r}: use one of {', '.join(STYLES)}.", 422)
    if not isinstance(prompt, str) or len(prompt) > 2000:
        raise ApiError("'prompt' must be text of 2,000 characters at most.", 422)
    if style == "custom" and not prompt.strip():
        raise ApiError("The custom style needs instructions in 'prompt'.", 422)
    max_tokens = body.get("max_tokens")  # none: the service's own for the style (a short caption stops sooner)
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or not 8 <= max_tokens <= MAX_TOKENS):
        raise ApiError(f"'max_tokens' must be a whole number from 8 to {MAX_TOKENS}.", 422)
    names = dataset.image_names()
    wanted = body.get("names")
    if wanted is not None:
        if not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted):
            raise ApiError("'names' must be a list of image names.", 422)
        names = [n for n in names if n in set(wanted)]
    if not names:
        raise ApiError("There are no images to caption.", 409)
    return {"mode": mode, "style": style, "prompt": prompt, "max_tokens": max_tokens, "names": names,
            "chosen": wanted is not None}  # some images picked, not the whole dataset


@bp.get("/api/caption-service")
def caption_service_status():
    return jsonify(service_health(context.settings()))


@bp.post("/api/datasets/<dataset_id>/caption")
def start_captioning(dataset_id: str):
    dataset = context.dataset(dataset_id)
    return jsonify(start_caption_job(dataset, options_from(json_body(), dataset)).public()), 202


def start_caption_job(dataset: Dataset, options: dict, parent_id: str | None = None):
    """Queue a caption run (409 while one runs, 503 when the caption service cannot take it)."""
    current = context.jobs().latest("caption", dataset.id)
    if current and current.status in ACTIVE:
        raise ApiError("Auto-captioning is already running for this dataset.", 409)
    settings = context.settings()
    health = service_health(settings)
    if not health["reachable"] or health.get("status") == "error":  # "downloading": the run waits for it
        reason = health.get("reason") or "it reported an error"
        raise ApiError(f"Auto-caption cannot start: {reason}", 503, headers={"Retry-After": "10"})
    return context.executor().submit("caption", dataset.id, lambda j: run_captions(j, dataset, settings, options),
                                     total=len(options["names"]), parent_id=parent_id,
                                     config={k: v for k, v in options.items() if k != "names"})


@bp.get("/api/datasets/<dataset_id>/caption")
def caption_progress(dataset_id: str):
    dataset = context.dataset(dataset_id)
    return jsonify({"job": context.latest_job(dataset, "caption")})


@bp.delete("/api/datasets/<dataset_id>/caption")
def cancel_captioning(dataset_id: str):
    dataset = context.dataset(dataset_id)
    current = context.jobs().latest("caption", dataset.id)
    if not current or current.status not in ACTIVE:
        raise ApiError("No auto-caption run is in progress.", 409)
    job = context.jobs().request_stop(current.id, reason="Stopping after the current image.")
    return jsonify({"job": job.public(), "cancelling": True})
