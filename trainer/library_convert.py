"""Convert a LoRA copied into the library by hand (through Jupyter, scp, a network volume) that is in another
trainer's layout: kohya's or LyCORIS' key names, the original checkpoint's fused qkv, a LyCORIS LoHa. Its card says
so (trainer.library_facts: `foreign`) and offers Convert; once converted it is tried, trained further, made smaller
and merged like any other.

    POST /api/library/files/<file>/convert  -> 202 {"job"}: a job of the import kind (trainer.lora_import), which the
                                               library page follows as it follows an import

The converted file takes the file's name; the file as it was goes to Recently deleted (trainer.trash), restorable for
TRASH_DAYS. A file of that name in ComfyUI's loras is left as it is, even the same one: it is the user's own (copied
there too, or added from there: trainer.library_comfyui), and ComfyUI loads it in any layout. Nothing is replaced
when the conversion fails, is stopped, or the file was renamed, deleted or replaced meanwhile (the job says so). One
conversion of a file at a time; none while a render of it waits or runs.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from flask import Blueprint, jsonify

from studio.atomic import place_file
from studio.jobs import ACTIVE, JobError
from studio.web import ApiError
from studio.workspace import confined
from trainer import library, library_edit, library_facts, lora_import, trash
from trainer.library_comfyui import COMFYUI_FILE
from trainer.lora_file import LoraFileError, read_header
from trainer.lora_formats import foreign_kind

bp = Blueprint("library_convert", __name__)
_starting = threading.Lock()  # the already-converting check and the job's creation go together


@bp.post("/api/library/files/<name>/convert")
def convert_library_file(name: str):
    from trainer.jobs_api import store, workspace
    from trainer.renders_api import library_renders

    space = workspace()
    path = library.library_lora(space.loras, name)
    try:
        kind = foreign_kind(read_header(path))
    except LoraFileError as exc:
        raise ApiError(str(exc), 422) from None
    if kind is None:
        raise ApiError(f"{path.name} is in this studio's layout already: there is nothing to convert.", 409)
    with _starting:
        if any(job.config.get("convert") == path.name for job in store().list(ACTIVE, kind=lora_import.KIND)):
            raise ApiError(f"{path.name} is being converted already.", 409)
        if library_renders(path.name, ("queued", "running"), limit=1):
            raise ApiError(f"{path.name} is being rendered now; convert it when that is done.", 409)
        job, _ = store().create(lora_import.KIND, dataset="", name=f"Convert {path.name}",
                                owner=lora_import.executor().owner, config={"convert": path.name, "from": kind},
                                message="Waiting for a free slot.")
    job = lora_import.executor().submit(lora_import.KIND, "", lambda job: _convert(job, space, path, kind), job=job)
    return jsonify({"job": job.public()}), 202


def _convert(job, space, path: Path, kind: str) -> dict:
    before = _identity(path)
    incoming = confined(space.loras, lora_import.INCOMING, f"{secrets.token_hex(8)}.safetensors")
    incoming.parent.mkdir(parents=True, exist_ok=True)
    job.update(phase="converting", message=f"Converting {path.name} from {kind}")
    try:
        os.link(path, incoming)  # the conversion reads this name: a rename of the file meanwhile does not matter
    except OSError:
        place_file(path, incoming)
    try:
        converted = lora_import.in_our_names(job, incoming, path.name)
        rank = lora_import.checked_lora(incoming, path.name)
        with library_edit.renaming:  # no rename between the check and the swap
            if _identity(path) != before:
                raise JobError(f"{path.name} was renamed, deleted or replaced while it was converted: nothing was "
                               "changed. Convert it again if it is still needed.")
            known = library.twin(space.loras, incoming)  # this LoRA is in the library already, converted before
            if known is not None:  # this copy goes; a file of that name in ComfyUI's loras is the user's own: stays
                kept = trash.keep_original(space, path, f"the same LoRA as {known.name}")
                path.unlink()
                library_facts.source_file(path).unlink(missing_ok=True)
            else:
                comfy = space.comfyui_loras / path.name if space.comfyui_loras else None
                if comfy is not None and library.same_bytes(comfy, path):  # the same file there: not offered again
                    library_facts.write_source(path, {COMFYUI_FILE: comfy.name, **library_facts.read_source(path)})
                kept = trash.keep_original(space, path, f"before converting from {kind}")
                os.replace(incoming, path)
    finally:
        incoming.unlink(missing_ok=True)
    notes = " and ".join(converted.notes) if converted and converted.notes else kind
    what = "a LyCORIS LoKr" if rank is None else f"rank {rank}"
    if known is not None:
        job.update(message=f"{path.name}, converted from {notes}, is {known.name} of the library ({what}): this copy "
                           f"went to Recently deleted for {trash.TRASH_DAYS} days.")
        return {"file": known.name, "rank": rank, "size": known.stat().st_size, "converted_from": converted.notes,
                "original": kept, "already": True}
    job.update(message=f"Converted {path.name} from {notes} ({what}); the file as it was is in Recently deleted for "
                       f"{trash.TRASH_DAYS} days.")
    return {"file": path.name, "rank": rank, "size": path.stat().st_size, "converted_from": converted.notes,
            "original": kept}


def _identity(path: Path) -> tuple | None:
    """What tells the same file from a replaced one: (device, inode, size, modified); None when it is gone."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
