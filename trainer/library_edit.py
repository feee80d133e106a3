"""Rename a library file (a training job's LoRA, one added from a link or this computer, a copy, a checkpoint), or set
the trigger word the card, Try it and ComfyUI workflows of a file no job of yours finished use.

    PATCH /api/library/files/<file> {"name": "new name", "trigger_word": "ohwx"}  -> {"file", "trigger_word"}

The file's bytes stay as they are (its hash still finds it on Civitai and in LoRA managers): the trigger word lives in
its record beside it (trainer.library_facts) and wins over the file's own; "" goes back to the file's. A rename moves
the file, its record, its copy in ComfyUI's loras when that is the same file, and its renders' reference to it; the
new name is made of letters, digits, '-', '_' and '.' ("My style!" becomes My-style), and one taken in the library
or in ComfyUI's loras (case aside) is refused, as is a rename while one of its renders waits or runs. A training
job's own LoRA is renamed too (the job records its new name: Train further replaces that file, and the README and
ComfyUI workflow the pod serves name it: trainer.job_files), not while it trains further; its trigger word is the
job's.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from pathlib import Path

from flask import Blueprint, jsonify

from studio.atomic import atomic_write_json
from studio.jobs import ACTIVE, Job
from studio.web import ApiError, json_body
from trainer import library, library_facts, renders
from trainer.names import NAME_MAX

bp = Blueprint("library_edit", __name__)
TRIGGER_MAX = 200
renaming = threading.Lock()  # one rename at a time: the taken check and the move go together


@bp.patch("/api/library/files/<name>")
def edit_library_file(name: str):
    from trainer.jobs_api import store, workspace

    space, body = workspace(), json_body()
    unknown = sorted(set(body) - {"name", "trigger_word"})
    if unknown or not body:
        raise ApiError("Send the file's new \"name\", its \"trigger_word\", or both.", 422)
    path = library.library_lora(space.loras, name)
    owner = owner_job(path.name)
    if owner is not None and "trigger_word" in body:
        raise ApiError(f"{path.name} is the LoRA of the training job “{owner.name}”: its trigger word is the job's "
                       "(its README, workflows and Try it use it).", 409)
    if owner is not None and owner.status in ACTIVE:
        raise ApiError(f"{path.name} is the LoRA of “{owner.name}”, which is training further now: rename it when it "
                       "is done.", 409)
    trigger = _trigger(body["trigger_word"]) if "trigger_word" in body else None
    if "name" in body:
        before, path = path.name, _rename(space, path, body["name"])
        if owner is not None:  # the job's library file (Train further replaces it; its README and workflow name it)
            store().update(owner.id, result={**(owner.result or {}), "library_file": path.name},
                           message=(owner.message or "").replace(before, path.name))  # "Copied to trainer/loras/<name>"
    if trigger is not None:
        record = library_facts.read_source(path)
        if trigger:
            record[library_facts.USER_TRIGGER] = trigger
        else:  # "": the file's own again
            record.pop(library_facts.USER_TRIGGER, None)
        atomic_write_json(library_facts.source_file(path), record)
    meta = library_facts.lora_facts(path).metadata
    return jsonify({"file": path.name, "trigger_word": library_facts.trigger_of(meta)})


def owner_job(name: str) -> Job | None:
    """The training job whose LoRA the library file `name` is: the one that recorded it, else (a job of an earlier
    release) the finished job, or the one training further, whose LoRA it is by content."""
    from trainer.catalog_api import job_entries, library_jobs
    from trainer.jobs_api import store

    found = next(filter(None, map(store().find, store().holders("train", "library_file", name))), None)
    if found is None:
        entry = next((e for e in job_entries(library_jobs()) if e["library_file"] == name), None)
        found = store().find(entry["job_id"]) if entry else None
    return found


def _trigger(value) -> str:
    if not isinstance(value, str) or len(value) > TRIGGER_MAX or any(ord(c) < 32 for c in value):
        raise ApiError(f"'trigger_word' must be text of at most {TRIGGER_MAX} characters on one line ('' for the "
                       "file's own).", 422)
    return ", ".join(word.strip() for word in value.split(",") if word.strip())


def _rename(space, path: Path, wanted) -> Path:
    from trainer.jobs_api import store
    from trainer.renders_api import library_renders

    if not isinstance(wanted, str) or not wanted.strip():
        raise ApiError("'name' must be the file's new name.", 422)
    stem = file_stem(wanted.strip().removesuffix(".safetensors"))
    if not stem:  # "!!!" would silently be lora.safetensors
        raise ApiError(f"{wanted.strip()!r} has no letter or digit to name a file by: use letters, digits, '-', '_' "
                       "or '.'.", 422)
    target = path.with_name(f"{stem}.safetensors")
    if target.name == path.name:
        return path
    with renaming:
        busy = library_renders(path.name, ("queued", "running"), limit=1)
        if not path.is_file():  # deleted or renamed in another tab since this request looked
            raise ApiError(f"{path.name} was deleted or renamed meanwhile: reload the page.", 404)
        if busy:
            raise ApiError(f"{path.name} is being rendered now; rename it when that is done.", 409)
        folders = [space.loras] + ([space.comfyui_loras] if space.comfyui_loras else [])
        for folder in folders:
            clash = next((other for other in Path(folder).glob("*.safetensors")
                          if other.name.lower() == target.name.lower() and not library.same_file(other, path)), None)
            if clash is not None:
                where = "the library" if folder == space.loras else "ComfyUI's loras"
                raise ApiError(f"A LoRA named {clash.name} is in {where} already: choose another name.", 409)
        comfy = space.comfyui_loras / path.name if space.comfyui_loras else None
        _move(path, target)  # the new name first: a failure half-way leaves two names, never none
        if comfy is not None and comfy.is_file() and library.same_bytes(comfy, target):  # ours, linked or copied
            _move(comfy, comfy.with_name(target.name))
        if library_facts.source_file(path).is_file():
            os.replace(library_facts.source_file(path), library_facts.source_file(target))
        for render in library_renders(path.name, limit=100_000):
            store().update(render.id, config={**render.config, renders.LIBRARY_FILE: target.name})
    return target


def file_stem(text: str) -> str:
    """A library file's name (without .safetensors) from any text, as an upload names its file (trainer.lora_import):
    letters (any script's: "猫-style" stays so), digits, '-', '_' and '.', at most NAME_MAX, starting with a letter
    or digit ("My style!" -> "My-style"); "" when there is no letter or digit to name it by."""
    stem = re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFC", text)).strip("-._")  # é typed as e + ´: one letter
    stem = re.sub(r"^[\W_]+", "", stem)
    return stem[:NAME_MAX].rstrip("-._")


def _move(source: Path, target: Path) -> None:
    """`source` as `target`: a hard link then the old name's removal (never over a file: FileExistsError), or a
    plain rename where the disk has no hard links; a case-only change renamed in place."""
    try:
        if source.name.lower() == target.name.lower():
            os.rename(source, target)
            return
        try:
            os.link(source, target)
        except FileExistsError:
            raise ApiError(f"A file named {target.name} appeared meanwhile: choose another name.", 409) from None
        except FileNotFoundError:  # said below
            raise
        except OSError:
            os.rename(source, target)
            return
    except FileNotFoundError:  # deleted (or renamed) meanwhile, in another tab
        raise ApiError(f"{source.name} was deleted or renamed meanwhile: reload the page.", 404) from None
    source.unlink(missing_ok=True)  # deleted this very moment: the new name has the file
