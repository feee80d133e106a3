"""JSON API for what jobs are built from and what they make: recipes, exported datasets, the LoRA library."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import yaml
from flask import Blueprint, current_app, jsonify, send_file

from studio.atomic import read_json
from studio.jobs import ACTIVE
from studio.thumbnails import UnreadableImage, cached_thumbnail
from studio.web import ApiError, json_body
from studio.workspace import Workspace, confined, safe_name
from trainer import library, library_facts
from trainer.dataset_checks import IMAGE_SUFFIXES, has_caption
from trainer.lokr_layout import factor_of
from trainer.lora_file import LoraFileError, lokr_modules, lora_ranks, read_header
from trainer.lora_formats import needs_converting

bp = Blueprint("catalog", __name__)
THUMBS_IN_STRIP = 8
DATASET_STRIP_SIZE = 160
CONFIG_MAX_VALUES = 100_000  # keys and values a config text may stand for (the biggest ai-toolkit config: ~300)


class ConfigLoader(yaml.SafeLoader):
    """YAML as the text view reads it: PyYAML (YAML 1.1) takes 2e-4 or 1.0e4 (an exponent without a dot or a sign)
    for text, which no number setting accepts; YAML 1.2 and JSON read a number, as the person typing it meant."""


EXPONENT_NUMBER = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_NUMBER, list("-+0123456789"))


def workspace() -> Workspace:
    return current_app.config["STUDIO_WORKSPACE"]


def _recipe(recipe_id: str):
    from trainer.recipes import ConfigError, get_recipe

    try:
        return get_recipe(recipe_id)
    except ConfigError as exc:
        raise ApiError(str(exc.errors[0]["message"]), 404) from None


@bp.get("/api/recipes")
def recipes():
    from trainer.recipes import DEFAULT_RECIPE, list_recipes

    return jsonify({"recipes": [_describe(recipe) for recipe in list_recipes()], "default": DEFAULT_RECIPE})


def _describe(recipe) -> dict:
    """What the form needs (the recipe's own description), where its JSON Schema is, and the settings
    variants may change (POST /api/jobs/variants)."""
    from trainer.variants import FIXED

    return {**recipe.describe(), "schema_url": f"/api/recipes/{recipe.name}/schema",
            "variant_fields": [f["name"] for f in recipe.form_fields() if f["name"] not in FIXED]}


@bp.get("/api/recipes/<recipe_id>/schema")
def recipe_schema(recipe_id):
    return jsonify(_recipe(recipe_id).json_schema())


@bp.post("/api/config/render")
def render_config():
    """The config as YAML (what the form's YAML view shows)."""
    body = json_body()
    config = body.get("config")
    if not isinstance(config, dict):
        raise ApiError("config must be a JSON object.", 422)
    return jsonify({"text": yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)})


@bp.post("/api/config/parse")
def parse_config():
    """YAML or JSON text from the form's text view, back into a config object. An ai-toolkit config is translated
    (trainer.aitoolkit_config): {"config": the settings it states, "from": "ai-toolkit", "taken", "own_way",
    "warnings"}; the form lays those settings over its own."""
    from trainer.aitoolkit_config import translate

    text = json_body().get("text")
    if not isinstance(text, str):
        raise ApiError("text must be a string of YAML or JSON.", 422)
    try:
        config = yaml.load(text, Loader=ConfigLoader) if text.strip() else {}  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "it cannot be parsed"
        raise ApiError(f"The config text is not valid YAML/JSON{where}: {problem}.", 422) from None
    if not isinstance(config, dict):
        raise ApiError("The config text must describe an object of settings (name: value).", 422)
    if _over(config, CONFIG_MAX_VALUES):  # aliases repeat a value by reference: 349 bytes can stand for 58 MB
        raise ApiError(f"The config text stands for more than {CONFIG_MAX_VALUES:,} values once its aliases (*name) "
                       "are written out: no config has that many; write the values out instead.", 422)
    try:  # YAML also reads .inf, .nan, dates and !!binary, which no setting takes and JSON cannot carry
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ApiError(f"The config text holds a value no setting takes ({exc}): use plain numbers, text, true/false "
                       "and lists.", 422) from None
    translated = translate(config)
    if translated is not None:
        return jsonify({"config": translated.config, "from": "ai-toolkit", "taken": translated.taken,
                        "own_way": translated.own_way, "warnings": translated.warnings})
    return jsonify({"config": config})


def _over(value, budget: int) -> bool:
    """Whether `value`, with every alias written out, holds more than `budget` values (stops at the budget)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _dataset_images(folder: Path) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith(".")]


def dataset_summary(folder: Path) -> dict:
    images = _dataset_images(folder)
    try:
        names = set(os.listdir(folder))
    except OSError:
        names = set()
    captioned = sum(1 for image in images if Path(image).stem + ".txt" in names
                    and has_caption(folder / f"{Path(image).stem}.txt"))
    meta = read_json(folder / "dataset.json", {}) or {}
    step = max(1, len(images) // THUMBS_IN_STRIP) if images else 1
    strip = images[::step][:THUMBS_IN_STRIP]
    return {"name": folder.name, "images": len(images), "captioned": captioned,
            "trigger_word": meta.get("trigger_word") or "", "exported_at": meta.get("exported_at"),
            "source_dataset_id": meta.get("source_dataset_id"),
            "thumbs": [f"/api/datasets/{quote(folder.name)}/thumbs/{quote(image)}" for image in strip]}


@bp.get("/api/datasets")
def datasets():
    root = workspace().exports
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    return jsonify({"datasets": [dataset_summary(folder) for folder in folders]})


@bp.get("/api/datasets/<name>/thumbs/<image>")
def dataset_thumb(name, image):
    folder = workspace().export_dir(name)
    source = confined(folder, safe_name(image))
    if not source.is_file() or source.suffix.lower() not in IMAGE_SUFFIXES:
        raise ApiError(f"The dataset {name!r} has no image {image!r}.", 404)
    stat = source.stat()  # an export may bring back an older file under the same name: both are in the key
    stamped = workspace().cache / "thumbs" / safe_name(name) / f"{source.name}.{int(stat.st_mtime)}.{stat.st_size}.webp"
    try:
        thumb = cached_thumbnail(source, stamped, DATASET_STRIP_SIZE)
    except UnreadableImage:
        raise ApiError(f"{image!r} cannot be read as an image.", 422) from None
    return send_file(os.fspath(thumb), conditional=True, max_age=3600)


@bp.get("/api/library")
def library_list():
    jobs_root = workspace().jobs
    jobs = library_jobs()
    entries = job_entries(jobs)
    further = {job.id: job.status for job in jobs if job.status in ACTIVE}  # queued or running to train further
    for e in entries:
        if e["job_id"] in further:
            e["training_further"] = further[e["job_id"]]
        facts = library_facts.lora_facts(jobs_root / e["job_id"] / e["path"])
        e.update(_kind(facts))
        e["download_url"] = (f"/api/library/files/{quote(e['library_file'])}" if e["library_file"]  # as it is named
                             else f"/api/jobs/{e['job_id']}/files/{e['path']}")
        if e["samples"]:
            e["samples"]["urls"] = [f"/api/jobs/{e['job_id']}/files/{p}" for p in e["samples"]["images"]]
    entries.extend(_loose_files(entries, jobs))
    comfy = workspace().comfyui_loras
    for e in entries:  # what Delete takes along (library.remove_from_library), for its confirmation
        e["in_comfyui"] = bool(comfy and e["library_file"] and _likely_same(workspace().loras / e["library_file"],
                                                                            comfy / e["library_file"]))
    return jsonify({"loras": entries, "library_dir": str(workspace().loras),
                    "comfyui_dir": str(comfy) if comfy else None})


def _likely_same(path: Path, comfy: Path) -> bool:
    """Whether ComfyUI's file of that name is the library's: the same file, or a copy of its size (bytes are compared
    only when it is deleted; a page listing many LoRAs does not read them all)."""
    try:
        return library.same_file(path, comfy) or path.stat().st_size == comfy.stat().st_size
    except OSError:
        return False


def library_jobs() -> list:
    """The jobs whose LoRA the library holds: the completed ones, those training further now (their card stays,
    marked, until the new file replaces theirs), and those whose longer run was stopped or failed (the LoRA they
    finished with is still theirs)."""
    from trainer.jobs_api import store

    cut_short = [job for job in store().list(("stopped", "failed", "interrupted"), kind="train", limit=1000)
                 if (job.result or {}).get("lora_path")]
    return store().list(("completed",), limit=1000) + store().list(ACTIVE, kind="train", limit=100) + cut_short


def job_entries(jobs: list) -> list[dict]:
    """The library entries of finished jobs (trainer.library.entry), each with its file in trainer/loras
    (`library_file`: None when it is not there: deleted by hand, or never placed)."""
    entries = []
    for job in jobs:
        e = library.entry(job, workspace().jobs / job.id)
        if e:
            copy = library.library_copy(workspace(), job, workspace().jobs / job.id / e["path"])
            entries.append({**e, "library_file": copy.name if copy else None})
    return entries


def _kind(facts: library_facts.LoraFacts) -> dict:
    """A card's rank, kind (LoRA or LoKr) and the choices of its Make smaller and Save as a LoRA menus."""
    return {"rank": facts.rank, "lokr": facts.lokr, "lokr_factor": facts.lokr_factor, "smaller": list(facts.smaller),
            "as_lora": list(facts.as_lora), "foreign": facts.foreign, "refused": facts.refused}


def _loose_files(entries: list[dict], jobs: list) -> list[dict]:
    """LoRAs in the library folder that are no listed job's final LoRA: a job's checkpoint added to the library
    (linked to its job), a smaller copy, a LoRA from a link, or a file whose job was deleted or that was copied in by
    hand."""
    from trainer.jobs_api import store
    from trainer.lora_import import KIND as IMPORT
    from trainer.renders_api import latest_try

    known = {e["library_file"] for e in entries if e["library_file"]}
    checkpoints = _checkpoint_files(jobs)
    converting = {job.config.get("convert"): job.id for job in store().list(ACTIVE, kind=IMPORT, limit=100)}
    loose = []
    for path in sorted(workspace().loras.glob("*.safetensors")):
        if path.name in known:
            continue
        stat = path.stat()
        facts = library_facts.lora_facts(path)
        meta = facts.metadata
        job, step = checkpoints.get((stat.st_dev, stat.st_ino), (None, None))
        # its pictures: a checkpoint's previews at its step, else the latest render tried of it on its own page
        shown = library.samples_at(job, workspace().jobs / job.id, step) if job else None
        shown = shown or latest_try(path.name)
        loose.append({"job_id": None, "name": path.stem, "file": path.name, "path": path.name,
                      "size": stat.st_size, "dataset": job.dataset if job else None, "recipe": None,
                      "finished_at": stat.st_mtime, "steps": step, "loss": None,
                      # a job's checkpoint: its card leads to the job (and deleting it leaves the job alone)
                      "checkpoint_of": {"job_id": job.id, "job_name": job.name, "step": step} if job else None,
                      "metadata": library_facts.shown(meta), "samples": shown, **_kind(facts),
                      "converting": converting.get(path.name),
                      "leak": library.leak_summary([shown]) if shown and shown.get("pairs") else None,
                      "trigger_word": library_facts.trigger_of(meta),
                      "library_file": path.name, "download_url": f"/api/library/files/{quote(path.name)}"})
    return loose


def _checkpoint_files(jobs: list) -> dict[tuple[int, int], tuple]:
    """(device, inode) of every kept checkpoint's LoRA -> (its job, step): a checkpoint added to the library is
    the same file (a hard link), so its card can lead to its job."""
    found = {}
    for job in jobs:
        for checkpoint in library.checkpoints(workspace().jobs / job.id):
            try:
                stat = (workspace().jobs / job.id / checkpoint["file"]).stat()
            except OSError:
                continue
            found[(stat.st_dev, stat.st_ino)] = (job, checkpoint["step"])
    return found


@bp.get("/api/library/files")
def library_files():
    """Every LoRA file of the library with what a job needs to start from it: its rank and layers (from the
    file's header, nothing loaded), newest first. The new job form offers them for "Start from LoRA"."""
    files = []
    for path in workspace().loras.glob("*.safetensors"):
        try:
            header = read_header(path)
            stat = path.stat()
            if needs_converting(header):  # copied in by hand in another trainer's layout: its card offers Convert
                continue
        except (LoraFileError, OSError):
            continue
        ranks = sorted(set(lora_ranks(header).values()))
        meta = header.get("__metadata__") if isinstance(header.get("__metadata__"), dict) else {}
        lokr = bool(lokr_modules(header))
        # "name" is what a job's init_lora takes; "file" what the /api/library/files/<file> routes take
        files.append({"name": path.stem, "file": path.name, "size": stat.st_size, "modified": stat.st_mtime,
                      "rank": ranks[0] if len(ranks) == 1 else None, "lora_targets": meta.get("lora_targets"),
                      "trigger_word": library_facts.trigger_of({**meta, **library_facts.user_keys(path)}), "lokr": lokr,
                      "lokr_factor": factor_of(header)})
    return jsonify({"files": sorted(files, key=lambda f: -f["modified"])})


@bp.delete("/api/library/files/<name>")
def delete_library_file(name):
    """The LoRA leaves the library for Recently deleted (trainer.trash; its copy in ComfyUI's folder goes when it is
    the same file), with the renders tried of it on the library page (they come back with it); 409 while one of them
    renders. The page deletes the job it came from next (DELETE /api/jobs/<id>); an API client may keep the job."""
    from trainer.hub_publish import publishing
    from trainer.library_edit import owner_job
    from trainer.renders_api import library_renders, store
    from trainer.trash import trash_lora

    name = safe_name(name)
    owner = owner_job(name)
    if owner is not None and owner.status in ACTIVE:
        raise ApiError(f"{name} is the LoRA of “{owner.name}”, which is training further now: delete it when that is "
                       "done, or stop the job first.", 409)
    if owner is not None and publishing(owner.id):  # the page deletes the job next, which waits for the upload too
        raise ApiError(f"{name} is being published to Hugging Face: wait for the upload to finish (or stop it on the "
                       "job's page), then delete it.", 409)
    tries = library_renders(name, limit=10_000)
    if any(render.status == "running" for render in tries):
        raise ApiError(f"{name} is being rendered now; delete it when that is done (it takes seconds).", 409)
    entry, removed = trash_lora(workspace(), name, store(), tries,  # kept a while in Recently deleted, tries too
                                job_id=owner.id if owner else None)
    return jsonify({"deleted": name, "removed": [str(p) for p in removed], "trash": entry})


@bp.get("/api/library/files/<name>")
def library_file(name):
    path = confined(workspace().loras, safe_name(name))
    if not path.is_file():
        raise ApiError(f"The library has no file {name!r}.", 404)
    return send_file(os.fspath(path), as_attachment=True, download_name=path.name, max_age=0)
