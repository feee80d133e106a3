"""Variants: one job request queued two to four times with one setting changed (three learning rates, two
ranks, ...), the same data, seed and everything else, so the compare page shows what that setting does.

`POST /api/jobs/variants` takes a job request plus `"vary": {"field": "learning_rate", "values": [...]}`.
Every variant is checked before any is queued: all are queued, or none (422 naming the variant and field).
Each gets a LoRA name and a job name of its own that say its value.
"""

from __future__ import annotations

import copy
import hashlib
import re

from flask import Blueprint, current_app, jsonify, request

from studio.web import ApiError, json_body
from trainer.jobs_api import create_job, store
from trainer.pages import MAX_COMPARED
from trainer.validation import validate

bp = Blueprint("variants", __name__)

MIN_VARIANTS = 2
LONGEST_PART = 40  # characters of a variant's value in its LoRA name (80 at most): the LoRA's own name stays in front
LONGEST_SAID = 48  # characters of a variant's value in its job name
PRODIGY_RATE = 1.0
# settings that name or describe the run, or change only its speed and memory, not what it learns
FIXED = {"name", "sample_prompts", "default_caption", "init_lora", "trigger_word", "sample_width", "sample_height",
         "sample_steps", "sample_every", "save_every", "keep_last", "log_every", "missing_captions", "guidance_scale",
         "mixed_precision", "gradient_checkpointing", "vram_budget_gb", "compile", "attention_backend",
         "float8_matmuls", "save_dtype"}
SHORT = {"learning_rate": "lr", "lora_targets": "layers", "gradient_accumulation": "accum", "caption_dropout": "drop",
         "timestep_sampling": "t", "weight_decay": "wd", "batch_size": "batch", "resolutions": "res",
         "preserve_class": "class", "preserve_weight": "keep", "network": "", "lokr_factor": "lokr-f"}


def value_text(value) -> str:
    """A value as a name part: 0.0002 and 5e-05 as Python's shortest form gives them, [512, 768] -> 512+768,
    a choice (attention+feed_forward) as it is, empty text as none."""
    if isinstance(value, float):  # six digits when they say it whole, else all it takes (1.0000001 is not 1)
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    if isinstance(value, list):
        return "+".join(value_text(v) for v in value)
    if value == "":  # a text setting left empty (preserve_class off)
        return "none"
    return str(value)


def variant_payloads(payload: dict, field: str, values: list, usual_rate: float | None = None,
                     label: str | None = None) -> list[dict]:
    """The request once per value: config[field] = value, and names that say it (with the setting's `label` in the
    form, "Learning rate"). Optimizers compared: each variant takes its optimizer's usual learning rate unless the
    rate was set by hand (as the form does)."""
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    lora = str(config.get("name") or payload.get("name") or "lora")
    job = payload.get("name") or lora
    out = []
    for value in values:
        part = name_part(field, value)
        variant = copy.deepcopy(payload)
        variant["config"] = {**copy.deepcopy(config), field: value,
                             "name": f"{lora[: 79 - len(part)]}-{part}".strip("-")[:80]}
        if field == "optimizer" and usual_rate is not None:
            variant["config"]["learning_rate"] = follow_optimizer(config.get("learning_rate", usual_rate), value,
                                                                  usual_rate)
        said = value_text(value)
        if len(said) > LONGEST_SAID:  # its start and its end: values written alike differ there, mostly
            said = f"{said[:LONGEST_SAID - 16].rstrip()}…{said[-15:].lstrip()}"
        variant["name"] = f"{str(job)[: 117 - len(label or field) - len(said)]} · {label or field} {said}"
        out.append(variant)
    for key in ("config", None):  # a name said twice still (cut alike): the variant's number tells them apart
        names = [v["config"]["name"] if key else v["name"] for v in out]
        for index, variant in enumerate(out):
            if names.count(names[index]) > 1:
                if key:
                    variant["config"]["name"] = f"{names[index][:76]}-v{index + 1}"
                else:
                    variant["name"] = f"{names[index][:115]} #{index + 1}"
    return out


def name_part(field: str, value) -> str:
    """The setting and its value as the end of a LoRA name ("lr0.0002", "res512_768"); a long one is cut and
    ends in a few letters of its value's hash, so two long values that differ only near their end differ here."""
    part = re.sub(r"[^A-Za-z0-9_.+-]+", "-", f"{SHORT.get(field, field)}{value_text(value)}").replace("+", "_")
    if len(part) <= LONGEST_PART:
        return part
    digest = hashlib.sha256(value_text(value).encode("utf-8")).hexdigest()[:6]
    return f"{part[:LONGEST_PART - 7].rstrip('-_.')}-{digest}"


def follow_optimizer(rate, optimizer, usual_rate: float):
    """Prodigy's learning rate multiplies the step size it finds (1), AdamW's is the step size (`usual_rate`, the
    recipe's default): a rate that is either one becomes the one for `optimizer`; any other was chosen, and stays."""
    if rate not in (PRODIGY_RATE, usual_rate):
        return rate
    return PRODIGY_RATE if optimizer == "prodigy" else usual_rate


def check_vary(vary, fields: set[str]) -> tuple[str, list]:
    if not isinstance(vary, dict) or set(vary) != {"field", "values"}:
        raise ApiError("'vary' must be {\"field\": a setting, \"values\": [two to four values]}.", 422)
    field, values = vary["field"], vary["values"]
    if field not in fields or field in FIXED:
        raise ApiError(f"{field!r} is not a training setting that variants can change.", 422)
    if not isinstance(values, list) or not MIN_VARIANTS <= len(values) <= MAX_COMPARED:
        raise ApiError(f"Give {MIN_VARIANTS} to {MAX_COMPARED} values (the compare page shows up to "
                       f"{MAX_COMPARED} runs).", 422)
    # 1 and 1.0 are one value written twice: the same run, paid for twice
    if len({repr(v) for v in values}) != len(values) or any(
            a == b for i, a in enumerate(values) for b in values[i + 1:]):
        raise ApiError("The values must differ from each other.", 422)
    return field, values


def withdraw(job_id: str) -> None:
    """A variant queued by a request that failed part way: deleted while still queued, else stopped."""
    job = store().find(job_id)
    if job is None:
        return
    if job.status == "queued":
        store().delete(job_id)
    elif job.status == "running":
        store().request_stop(job_id, delete=True, reason="Its other variants could not be queued.")


@bp.post("/api/jobs/variants")
def post_variants():
    from trainer.recipes import ConfigError, get_recipe

    payload = json_body()
    vary = payload.pop("vary", None)
    try:
        recipe = get_recipe(payload.get("recipe") or "zimage-turbo")
    except ConfigError as exc:
        raise ApiError(str(exc), 422) from None
    labels = {f["name"]: f["label"] for f in recipe.form_fields()}
    field, values = check_vary(vary, set(labels))
    settings = current_app.config["STUDIO_SETTINGS"]
    variants = variant_payloads(payload, field, values, recipe.defaults().get("learning_rate"), labels[field])
    problems = []
    for value, variant in zip(values, variants, strict=True):
        report = validate(settings, variant)
        problems += [{**error, "variant": value_text(value),
                      "message": f"{labels[field]} {value_text(value)}: {error['message']}"} for error in report.errors]
    if problems:
        raise ApiError(f"Not queued: {problems[0]['message']}", 422, details=problems)
    key = request.headers.get("Idempotency-Key")
    made = []
    try:
        for index, variant in enumerate(variants):
            made.append(create_job(variant, f"{key}:{index}" if key else None))
    except Exception:  # checked, yet not queued (the disk, the database): take back the ones that were
        for job, created, _report in made:
            if created:
                withdraw(job.id)
        raise
    jobs = [job.public() for job, _created, _report in made]
    seconds = [report["estimated_duration_s"] for _job, _created, report in made]
    return jsonify({"jobs": jobs, "created": any(created for _job, created, _report in made),
                    "compare_url": "/compare?jobs=" + ",".join(job["id"] for job in jobs),
                    "estimated_duration_s": sum(seconds) if all(s is not None for s in seconds) else None}), 201
