"""The LoRA library's file tools: Make smaller (a copy at a lower rank: trainer.lora_resize, a LoKr's through
trainer.lokr_resize), Save as a LoRA (a LoKr's LoRA copy: trainer.lokr_lora) and Merge (2-4 LoRAs or LoKrs as one
LoRA: trainer.lora_merge). Each writes a new file beside the others in the library and ComfyUI's loras, never changing
one that is there."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from flask import Blueprint, jsonify

from studio.atomic import read_json
from studio.web import ApiError, json_body
from studio.workspace import confined, safe_name
from trainer import library, library_facts
from trainer.jobs_api import workspace
from trainer.lora_file import LoraFileError

bp = Blueprint("library_tools", __name__)
_writing = threading.Lock()  # a new file's taken-name check and its writing go together: two tabs, one name


@bp.get("/api/library/files/<name>/smaller")
def smaller_choices(name):
    """Make smaller's choices for a file with what each keeps: {"options": [{"rank", "bytes", "kept"}]}, `kept` the
    share of its change (by the Frobenius norm) a copy at that rank keeps, from each layer's singular values (the
    file read once, about a second for a rank-32 LoRA of the full model); nothing is written."""
    from trainer.lora_resize import smaller_options, spectra

    return _choices(name, smaller_options, spectra)


def _choices(name, options_of, spectra_of, refused: str | None = None):
    """A copy menu's choices for the library file `name`: `options_of(header, size)` ({"rank", "bytes"} each) with
    what each keeps, from `spectra_of(path)` (each layer's squared singular values), read only when there are
    choices; without any, 422 with `refused` when given, else an empty list."""
    from trainer.lora_file import read_header
    from trainer.lora_resize import kept_at

    path = library.library_lora(workspace().loras, name)
    try:
        options = options_of(read_header(path), path.stat().st_size)
        if not options and refused:
            raise ApiError(refused.format(file=path.name), 422)
        layers = spectra_of(path) if options else []
    except LoraFileError as exc:
        raise ApiError(str(exc), 422) from None
    return jsonify({"options": [{**option, "kept": round(kept_at(layers, option["rank"]), 4)} for option in options]})


@bp.post("/api/library/files/<name>/resize")
def resize_library_file(name):
    """{"rank": N}: a smaller copy of the LoRA at rank N, beside it in the library (and ComfyUI's loras) as
    <name>-r<N>.safetensors (trainer.lora_resize); says how much of the LoRA's change it keeps."""
    from trainer.lora_resize import resize

    return _copy_at_rank(name, "-r{rank}", resize)


@bp.get("/api/library/files/<name>/as-lora")
def as_lora_choices(name):
    """Save as a LoRA's choices for a LoKr with what each keeps: {"options": [{"rank", "bytes", "kept"}]} (each
    layer's singular values through its factors' SVDs: trainer.lokr_lora.lora_spectra); nothing is written."""
    from trainer.lokr_lora import lora_options, lora_spectra
    from trainer.lora_resize import read_tensors

    return _choices(name, lora_options, lambda path: lora_spectra(path.name, read_tensors(path)[1]),
                    refused="{file} is not a LyCORIS LoKr: it is a LoRA already.")


@bp.post("/api/library/files/<name>/as-lora")
def save_as_lora(name):
    """{"rank": N}: a LoRA copy of the LoKr at rank N (each layer's N largest directions: trainer.lokr_lora), beside
    it in the library (and ComfyUI's loras) as <name>-lora-r<N>.safetensors; says how much of the change it keeps."""
    from trainer.lokr_lora import as_lora

    return _copy_at_rank(name, "-lora-r{rank}", as_lora)


def _copy_at_rank(name, suffix: str, make):
    """201 with the copy `make(source, rank, target)` wrote of the library file `name` at the request's whole-number
    "rank", as <name><suffix>.safetensors, with what it keeps, its size against the source's and where it was placed;
    a copy of a LoRA from a link gets the same source record (its trigger words)."""
    from dataclasses import asdict

    source = confined(workspace().loras, safe_name(name))
    if not source.is_file():
        raise ApiError(f"The library has no file {name!r}.", 404)
    rank = json_body().get("rank")
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise ApiError("'rank' must be a whole number: the new file's rank.", 422)
    target = source.with_name(f"{source.stem}{suffix.format(rank=rank)}.safetensors")
    with _writing:
        if target.exists():
            raise ApiError(f"{target.name} is in the library already; delete it first to make it again.", 409)
        try:
            made = make(source, rank, target)
        except LoraFileError as exc:
            raise ApiError(str(exc), 422) from None
    if library_facts.source_file(source).is_file():
        library_facts.write_source(target, read_json(library_facts.source_file(source), {}) or {})
    placed = library.also_in_comfyui(workspace(), target)
    facts = {key: value for key, value in asdict(made).items() if key != "path"}  # rank, kept, size (from_rank)
    return jsonify({"file": target.name, **facts, "kept": round(made.kept, 4), "from_size": source.stat().st_size,
                    "placed": [str(path) for path in placed]}), 201


@bp.post("/api/library/merge")
def merge_library_files():
    """{"files": [{"file", "strength"}, ...] (2-4 LoRAs or LoKrs of the library), "name", "rank"}: one LoRA applying
    them all at their strengths, as chained loaders do (trainer.lora_merge): exact at the sum of their ranks, or at
    `rank` (each layer's largest directions; a LoKr joins only at a rank; `kept` says how much of the change stays).
    Written into the library (and ComfyUI's loras) as <name>.safetensors; 409 when that name is taken."""
    from trainer.lora_merge import merge

    body = json_body()
    sources = _merge_sources(body.get("files"))
    rank = body.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ApiError("'rank' must be a whole number from 1 up, or null for the exact merge (the sum of the ranks).",
                       422)
    with _writing:  # another merge of that name a moment ago, in another tab, is not replaced
        target = _merge_target(body.get("name"), sources)
        try:
            made = merge(sources, target, rank, _merged_metadata(target.stem, sources))
        except LoraFileError as exc:
            raise ApiError(str(exc), 422) from None
    placed = library.also_in_comfyui(workspace(), target)
    return jsonify({"file": target.name, "rank": made.rank, "kept": round(made.kept, 4), "size": made.size,
                    "placed": [str(path) for path in placed]}), 201


def _merge_sources(items) -> list[tuple[Path, float]]:
    """[(library file, strength)] of a merge request's `files`: 2-4 distinct LoRAs of Z-Image, strengths -2..2 but
    not 0."""
    import math

    from trainer.lora_file import zimage_lora_rank
    from trainer.lora_merge import MAX_FILES

    if not isinstance(items, list) or not 2 <= len(items) <= MAX_FILES:
        raise ApiError(f"'files' must list 2 to {MAX_FILES} LoRAs of the library: "
                       '[{"file": "cat.safetensors", "strength": 1.0}, ...].', 422)
    sources = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise ApiError('Each of \'files\' is {"file": a library LoRA, "strength": a number from -2 to 2, not 0}.',
                           422)
        strength = item.get("strength", 1.0)
        number = isinstance(strength, int | float) and not isinstance(strength, bool) and math.isfinite(strength)
        if not number or not 0 < abs(strength) <= 2:
            raise ApiError(f"{item['file']}: its strength must be a number from -2 to 2, and not 0 (it is "
                           f"{strength!r}).", 422)
        path = library.library_lora(workspace().loras, item["file"])
        if any(path == seen for seen, _strength in sources):
            raise ApiError(f"{path.name} is listed twice: give it once, at the strength you want.", 422)
        try:
            zimage_lora_rank(path, path.name)
        except LoraFileError as exc:
            raise ApiError(str(exc), 422) from None
        sources.append((path, float(strength)))
    return sources


def _merge_target(name, sources: list[tuple[Path, float]]) -> Path:
    """The merged file's place in the library: `name` (a LoRA name, in any script, as Rename and uploads take it),
    else one made of the files' names."""
    from trainer.library_edit import file_stem

    if name is not None and not isinstance(name, str):
        raise ApiError("'name' must be text.", 422)
    # typed as people type, with spaces ("my merged cat"): one word of it, as Rename makes one ("my-merged-cat")
    wanted = name.strip().removesuffix(".safetensors") if name and name.strip() else None
    if wanted is not None and ("/" in wanted or "\\" in wanted):
        raise ApiError("'name' must be a file's name, not a path (no '/' or '\\').", 422)
    stem = file_stem(wanted if wanted is not None else "-".join(path.stem for path, _s in sources))
    if not stem:
        raise ApiError(f"{wanted!r} has no letter or digit to name a file by: use letters, digits, '-', '_' or '.'.",
                       422)
    target = confined(workspace().loras, safe_name(f"{stem}.safetensors"))
    taken = next((other for other in workspace().loras.glob("*.safetensors")
                  if other.name.lower() == target.name.lower()), None)  # "Cat" beside "cat": one on some disks
    if taken is not None:
        raise ApiError(f"{taken.name} is in the library already: pick another name.", 409)
    theirs = library.comfyui_clash(workspace(), target.name, target)
    if theirs is not None:
        raise ApiError(f"ComfyUI's loras has a file of its own named {theirs.name}: pick another name.", 409)
    return target


def _merged_metadata(name: str, sources: list[tuple[Path, float]]) -> dict[str, str]:
    """Its title, base model and every file's trigger words (as LoRA managers and model sites read them)."""
    from trainer.lora_file import BASE_REPO

    words = []
    for path, _strength in sources:
        phrase = library_facts.trigger_of(library_facts.lora_facts(path).metadata) or ""
        words += [w.strip() for w in phrase.split(",")]
    words = list(dict.fromkeys(w for w in words if w))
    return {"name": name, "modelspec.title": name, "base_model": BASE_REPO,
            "modelspec.architecture": "z-image-turbo/lora", "ss_base_model_version": "z-image-turbo",
            **({"trigger_word": words[0], "modelspec.trigger_phrase": ", ".join(words)} if words else {}),
            **({"trigger_words": json.dumps(words)} if len(words) > 1 else {})}
