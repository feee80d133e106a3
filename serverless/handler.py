"""RunPod Serverless worker: the pod's recipe and training engine behind the `runpod` SDK.

Input:  {"job_config": {...recipe config, same schema as the pod...},
         "dataset": {"bucket"?: str, "prefix": str} | {"url": "https://.../dataset.zip"},
           or "datasets": [{...one of those..., "repeats"?: 1-100}, ...] (up to 8, trained as one mix),
         "start_lora"?: {"bucket"?: str, "key": "....safetensors"} | {"url": "https://....safetensors"},
         "recipe"?: "zimage-turbo", "output_prefix"?: str,
         "hub"?: {"repo": "name" or "owner/name", "private"?: true}}   (also publish to Hugging Face, HF_TOKEN)
Output: {"lora_key", "lora_url", "steps", "final_loss", "seconds", ..., "hub"?: {"repo", "url", "commit"} or
         {"error"}} or {"error": str, "details": [...]}.

Storage keys come from the worker's environment (S3_* / R2_*), never from the job input: the SDK logs
job inputs and outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from serverless.dataset import STOP, DatasetInputError, JobStopped, fetch_dataset
from serverless.images import prepare_images
from serverless.progress import ProgressReporter, RunpodSender, stop_check
from serverless.publish import HubInputError, parse_hub, publish_lora
from serverless.sources import fetch_start_lora, has_control, parse_datasets, parse_start_lora, start_lora_name
from serverless.work_folders import held, sweep
from studio.jobs import JobStopped as Stopped
from studio.s3 import Storage, StorageError, join_key, normalize_prefix, storage_configured
from studio.s3_outputs import upload_job_outputs
from studio.settings import Settings, SettingsError, load_settings
from trainer.dataset_checks import OVERFIT_NEEDS_HOLDOUT
from trainer.evaluation_set import EVAL_RESULT_KEYS

log = logging.getLogger(__name__)

INPUT_KEYS = {"job_config", "dataset", "datasets", "start_lora", "recipe", "output_prefix", "hub"}
DEFAULT_RECIPE = "zimage-turbo"
DEFAULT_OUTPUT_PREFIX = "loras"
LINK_EXPIRES_S = 7 * 24 * 3600
# S3 and R2 keys are at most 1024 bytes: the prefix leaves room for the job's folder and its file names
MAX_OUTPUT_PREFIX_BYTES = 512
WRITE_CHECK_NAME = ".write-check"


class InputError(ValueError):
    def __init__(self, message: str, details: list | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


def failure(message: str, details: list | None = None) -> dict:
    return {"error": message, "details": details or []}


def _job_folder_name(job: dict) -> str:
    raw = str(job.get("id") or "local")
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip(".-")[:100] or "job"


def parse_input(data, settings: Settings):
    """Check the whole input before any download: returns (recipe, config, [(dataset spec, repeats)], start
    LoRA spec or None, output prefix)."""
    from trainer.recipes import ConfigError, get_recipe

    if not isinstance(data, dict):
        raise InputError("The job input must be an object with `job_config` and `dataset`.")
    details = [{"field": k, "message": "Unknown key."} for k in sorted(set(data) - INPUT_KEYS)]
    details += [{"field": "job_config", "message": "Required."}] if "job_config" not in data else []
    details += [{"field": "dataset", "message": "Required."}] if "dataset" not in data and "datasets" not in data \
        else []
    if details:
        raise InputError("The job input is invalid.", details)
    recipe_id = data.get("recipe", DEFAULT_RECIPE)
    try:
        recipe = get_recipe(recipe_id)
    except (KeyError, ValueError, ConfigError):
        raise InputError(f"Unknown recipe {recipe_id!r}.",
                         [{"field": "recipe", "message": "Unknown recipe."}]) from None
    if not isinstance(data["job_config"], dict):
        raise InputError("`job_config` must be an object.", [{"field": "job_config", "message": "Must be an object."}])
    try:
        config = recipe.config_from_dict(data["job_config"])
    except ConfigError as exc:
        raise InputError("The job config is invalid.", list(exc.errors)) from None
    try:
        sources = parse_datasets(data)
        start = parse_start_lora(data.get("start_lora"))
    except DatasetInputError as exc:
        raise InputError(exc.message, exc.details) from None
    if start:
        config = dataclasses.replace(config, init_lora=start_lora_name(start))
    elif config.init_lora:
        raise InputError("`init_lora` names a LoRA in a pod's library; a serverless job gets the file as "
                         "`start_lora`: {\"key\"} in the bucket or {\"url\"}.",
                         [{"field": "init_lora", "message": "Use start_lora."}])
    output_prefix = data.get("output_prefix", settings.s3_output_prefix or DEFAULT_OUTPUT_PREFIX)
    if not isinstance(output_prefix, str):
        raise InputError("`output_prefix` must be a string.", [{"field": "output_prefix", "message": "Not a string."}])
    if len(output_prefix.encode("utf-8")) > MAX_OUTPUT_PREFIX_BYTES or has_control(output_prefix):
        # checked here, not by the store refusing the upload once the LoRA is trained
        raise InputError(f"`output_prefix` must be at most {MAX_OUTPUT_PREFIX_BYTES} bytes of folder names, without "
                         "control characters.", [{"field": "output_prefix", "message": "Not a valid prefix."}])
    try:
        output_prefix = normalize_prefix(output_prefix)
    except StorageError as exc:
        raise InputError(exc.message, [{"field": "output_prefix", "message": "Not a valid prefix."}]) from None
    if getattr(config, "stop_when_overfitting", False) and not getattr(config, "holdout_images", 0):
        # the pod refuses this too (trainer.dataset_checks); the engine would only log it and run every step
        raise InputError(OVERFIT_NEEDS_HOLDOUT,
                         [{"field": "stop_when_overfitting", "message": "Needs holdout_images."}])
    return recipe, config, sources, start, output_prefix


def check_writable(storage: Storage, prefix: str) -> None:
    """Prove the key may write where the LoRA goes (a key that may only read passes `check()`): an empty object
    written and removed, before anything is downloaded or trained."""
    key = prefix + WRITE_CHECK_NAME
    storage.put_bytes(key, b"", "text/plain")
    try:
        storage.delete(key, " (the worker's write check)")
    except StorageError as exc:  # a key that may write but not delete: the LoRA can still be stored
        log.warning("could not remove %s: %s", key, exc.message)


def _fetch_dataset(spec: dict, settings: Settings, raw_dir: Path, dataset_dir: Path, name: str, label: str,
                   progress, stop: threading.Event | None = None, outputs: str | None = None):
    """One dataset downloaded and decoded into a flat folder of images and captions (`name` in its
    dataset.json, `label` in messages: "dataset", or "dataset 2" of several)."""
    shutil.rmtree(raw_dir, ignore_errors=True)
    shutil.rmtree(dataset_dir, ignore_errors=True)
    progress({"phase": "downloading", "message": f"Downloading the {label}"})
    stopping = STOP.set(stop)  # unpacking ZIPs and taking videos' frames end at RunPod's stop too
    try:
        left_out = fetch_dataset(spec, settings, raw_dir, progress, stop, outputs)  # by its ZIPs and Parquet files
        prepared = prepare_images(raw_dir, dataset_dir, settings.max_image_pixels, name=name,
                                  max_frames=settings.video_max_frames, frame_seconds=settings.video_frame_seconds)
        prepared.skipped[:0] = left_out
    except DatasetInputError as exc:
        raise InputError(exc.message, exc.details) from None
    except Stopped:
        raise JobStopped() from None
    finally:
        STOP.reset(stopping)
        shutil.rmtree(raw_dir, ignore_errors=True)
    if prepared.images == 0:
        raise InputError(f"The {label} holds no usable images.", prepared.skipped[:50])
    log.info("%s ready: %d images, %d captions, %d files skipped", label, prepared.images,
             prepared.captions, len(prepared.skipped))
    return prepared


def _fetch_start_lora(spec: dict, config, settings: Settings, job_dir: Path, progress,
                      stop: threading.Event | None = None) -> None:
    """The LoRA to start from, into the job folder where the engine reads it, checked against the config."""
    from trainer.lora_file import START_LORA_FILE, LoraFileError, check_start_lora

    try:
        path = fetch_start_lora(spec, settings, job_dir / START_LORA_FILE, progress, stop)
        check_start_lora(path, config.rank, config.lora_targets, config.init_lora, config.network, config.lokr_factor)
    except DatasetInputError as exc:
        raise InputError(exc.message, exc.details) from None
    except LoraFileError as exc:
        (job_dir / START_LORA_FILE).unlink(missing_ok=True)
        raise InputError(str(exc), [{"field": "start_lora", "message": str(exc)}]) from None


def _train(config, dataset_dir, job_dir: Path, settings: Settings, on_progress,
           stop: threading.Event | None = None) -> dict:
    from studio.registry import model_paths
    from trainer.engine import TrainingControl, train
    from trainer.engine.control import StopRequested

    if settings.demo:
        from studio.demo import ensure_demo_models

        ensure_demo_models(settings, caption=False)
    control = TrainingControl(job_dir)
    finished = threading.Event()

    def pass_on_stop() -> None:  # RunPod's stop becomes the engine's: it saves a checkpoint and ends the loop
        while not finished.is_set():
            if stop.wait(0.5):
                control.request_stop()
                return

    if stop is not None:
        threading.Thread(target=pass_on_stop, name="serverless-stop", daemon=True).start()
    try:
        result = train(config, dataset_dir, job_dir, model_paths(settings), control, on_progress)
    except StopRequested:  # a stop that escaped the engine: the last step's checkpoint is kept
        raise JobStopped() from None
    else:
        # a stop while the final previews rendered completes the run without them (trainer.engine.run_end): here
        # the job was cancelled or ran out of time all the same, and nothing more is uploaded
        if result.get("stopped") or (stop is not None and stop.is_set()):
            raise JobStopped()
        return result
    finally:
        finished.set()
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the worker lives on for the next job
        except ImportError:
            pass


def run(job: dict, settings: Settings, send: Callable[[dict], None], stop: threading.Event | None = None) -> dict:
    started = time.monotonic()
    progress = ProgressReporter(send)
    _recipe, config, sources, start, output_prefix = parse_input(job.get("input"), settings)
    try:
        hub = parse_hub(job["input"].get("hub"), settings)
    except HubInputError as exc:
        raise InputError(exc.message, exc.details) from None
    if not storage_configured(settings):
        raise StorageError("Object storage is not configured on this worker: set S3_BUCKET, S3_ACCESS_KEY_ID "
                           "and S3_SECRET_ACCESS_KEY (or the R2_* names).", code="not_configured")
    storage = Storage.from_settings(settings)
    storage.check()  # fail in seconds on bad keys, not after the training
    name = _job_folder_name(job)
    check_writable(storage, join_key(output_prefix, name) + "/")  # nor on a key that may only read

    work = settings.root / "serverless" / name
    sweep(work.parent, name)
    with held(work):
        job_dir = work / "job"
        downloads = stop_check(stop, progress)
        if start:
            _fetch_start_lora(start, config, settings, job_dir, downloads, stop)
        several = len(sources) > 1
        folders, images, skipped = [], 0, []

        def training_progress(update: dict) -> None:
            # the engine's "done" means trained; the job is done once the LoRA is uploaded
            progress({**update, "phase": "trained"} if update.get("phase") == "done" else update)

        suffixes = [f"-{index + 1}" for index in range(len(sources))] if several else [""]
        try:
            for suffix, (spec, repeats) in zip(suffixes, sources, strict=True):
                prepared = _fetch_dataset(spec, settings, work / f"download{suffix}", work / f"dataset{suffix}",
                                          name + suffix, f"dataset {suffix[1:]}" if several else "dataset", downloads,
                                          stop, output_prefix)
                folders.append((prepared.folder, repeats))
                images += prepared.images
                skipped += prepared.skipped
            result = _train(config, folders if several else folders[0][0], job_dir, settings, training_progress, stop)
        finally:
            for suffix in suffixes:  # fetched again by a retry; checkpoints stay
                shutil.rmtree(work / f"dataset{suffix}", ignore_errors=True)

        progress({"phase": "uploading", "message": "Uploading the LoRA"})
        pushed = upload_job_outputs(storage, job_dir, join_key(output_prefix, name) + "/",
                                    lora_path=Path(result["lora_path"]))
        url = storage.presigned_url(pushed["lora_key"], LINK_EXPIRES_S)
        published = None
        if hub:
            progress({"phase": "uploading", "message": f"Publishing the LoRA to {hub['repo']} on Hugging Face"})
            published = publish_lora(hub, settings, config, name, result, job_dir)
        progress({"phase": "done", "step": result["steps"], "loss": result["final_loss"], "message": "Done"})
        shutil.rmtree(work, ignore_errors=True)  # kept on failure: a retried job resumes from its last checkpoint
        return {
            "lora_key": pushed["lora_key"],
            "lora_url": url,
            "steps": int(result["steps"]),
            "final_loss": float(result["final_loss"]),
            "final_smooth_loss": result.get("final_smooth_loss"),
            **{key: result[key] for key in EVAL_RESULT_KEYS if key in result},  # the figures to compare runs by
            "leak": result.get("leak"),  # how much the LoRA changes its final previews without the trigger word
            "seconds": round(float(result["seconds"]), 2),
            "total_seconds": round(time.monotonic() - started, 2),
            "bucket": pushed["bucket"],
            "output_prefix": pushed["prefix"],
            "images": images,
            "skipped": skipped[:50],
            **({"hub": published} if published else {}),
        }


def _is_training_error(exc: Exception) -> bool:
    try:
        from trainer.engine import TrainingError
    except ImportError:
        return False
    return isinstance(exc, TrainingError)


def handler(job: dict, stop: threading.Event | None = None) -> dict:
    """One job: never raises; failures come back as {"error": sentence, "details": [...]}. Setting `stop` ends
    a download at its next block and the training at its next step (a checkpoint kept for a retry)."""
    job = job if isinstance(job, dict) else {}
    try:
        settings = load_settings()
    except SettingsError as exc:
        return failure(str(exc))
    sender = RunpodSender(job)
    try:
        return run(job, settings, sender, stop)
    except JobStopped:
        log.info("job %s stopped", job.get("id"))
        return failure("The job was stopped before it finished.")
    except InputError as exc:
        return failure(exc.message, exc.details)
    except StorageError as exc:
        return failure(exc.message)
    except ImportError as exc:
        log.exception("the training engine could not be imported")
        return failure(f"This worker cannot train: {exc.name or 'a module'} is missing from its install.")
    except Exception as exc:
        if _is_training_error(exc):
            return failure(str(exc))
        log.exception("job %s failed", job.get("id"))
        return failure(f"Internal error: {type(exc).__name__}. The worker log has the details.")
    finally:
        sender.flush()


async def stoppable_handler(job: dict) -> dict:
    """What `python -m serverless` gives the SDK: the job runs in a thread, so the SDK's loop stays free to hear
    RunPod stop it (cancelled, or past the execution timeout). A stop cancels this task: the job is told to stop,
    and the task ends once it has (the GPU is free before the worker takes the next job)."""
    stop = threading.Event()
    work = asyncio.ensure_future(asyncio.to_thread(handler, job, stop))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):  # stopped again while stopping: do not wait any more
            await asyncio.wait({work})
        raise
