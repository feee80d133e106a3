"""Z-Image LoRAs in ComfyUI's loras that the library does not hold (downloaded through ComfyUI, or on a network volume
from before the studio): listed under the library's cards, each added with one click to be tried, trained further,
made smaller or merged here.

    GET  /api/library/comfyui                  -> {"dir", "files": [{"file", "size", "modified", "layout"}], "others"}
    POST /api/library/comfyui/<file>/add       -> 201 {"file", "layout"}

`file` is the path inside ComfyUI's loras (its subfolders too); `layout` is None for a file in this studio's names,
else the other trainer's layout it is in (its card then offers Convert: trainer.library_convert); `others` counts the
files of other models left out. Adding places the same file (a hard link: no space taken where the disk allows) in the
library under its name, or name-2 when the library has another file of that name; ComfyUI's file stays as it is, and
the workflows of its renders name that file (comfyui_name).
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from flask import Blueprint, jsonify

from studio.atomic import place_file
from studio.web import ApiError
from studio.workspace import UnsafePathError, confined
from trainer import library, library_facts
from trainer.lora_file import LoraFileError, read_header
from trainer.lora_formats import zimage_layout
from trainer.lora_import import finite_or_error, loadable_or_error, settle

bp = Blueprint("library_comfyui", __name__)
COMFYUI_FILE = "comfyui_file"  # in a library file's record: the file of ComfyUI's loras it came from
_adding = threading.Lock()  # the already-in-the-library check and the placing go together
LAYOUTS_KEPT = 4096
_layouts: dict[tuple[str, int, int], str | None] = {}  # (path, size, modified) -> its layout (_layout)


@bp.get("/api/library/comfyui")
def comfyui_only():
    from trainer.jobs_api import workspace

    space = workspace()
    folder = space.comfyui_loras
    if folder is None or not folder.is_dir():
        return jsonify({"dir": None, "files": [], "others": 0})
    (held, held_sizes), added = _library_files(space.loras), _added(space.loras)
    files, others = [], 0
    for path in sorted(folder.rglob("*.safetensors")):
        relative = path.relative_to(folder).as_posix()
        try:
            confined(folder, *relative.split("/"))  # a link to a file elsewhere cannot be added: not offered
            stat = path.stat()
        except (OSError, UnsafePathError):
            continue
        layout = _layout(path, stat)
        if layout is None:
            others += 1
            continue
        if (stat.st_dev, stat.st_ino) in held or relative in added or any(
                library.same_bytes(other, path) for other in held_sizes.get(stat.st_size, ())):
            continue  # the library's own copy, one added from here (converted since, maybe), the same bytes
        files.append({"file": relative, "size": stat.st_size, "modified": stat.st_mtime,
                      "layout": None if layout == "ours" else layout})
    return jsonify({"dir": str(folder), "files": files, "others": others})


@bp.post("/api/library/comfyui/<path:name>/add")
def add_from_comfyui(name: str):
    from trainer.jobs_api import workspace

    space = workspace()
    folder = space.comfyui_loras
    if folder is None or not folder.is_dir():
        raise ApiError("ComfyUI is not installed on this pod: there is no loras folder of its own to add from.", 404)
    parts = name.split("/")
    confined(folder, *parts)  # inside ComfyUI's loras, links resolved: a link to a file elsewhere is refused
    source = folder.joinpath(*parts)  # as ComfyUI lists it: its loras folder may be a link to a shared one
    if {".", ".."} & set(parts) or not source.is_file() or source.suffix != ".safetensors":
        raise ApiError(f"ComfyUI's loras has no LoRA {name!r}.", 404)
    try:
        header = read_header(source)
        layout = zimage_layout(header)
        if layout is not None:
            loadable_or_error(header, source.name)  # as an upload is checked: a file no reader can load stays out
            finite_or_error(source, source.name)
    except LoraFileError as exc:
        raise ApiError(f"{source.name}: {exc}", 422) from None
    if layout is None:
        raise ApiError(f"{source.name} is not a LoRA of Z-Image's layers (a LoRA of another model, or not a LoRA): "
                       "the library holds Z-Image's.", 422)
    space.loras.mkdir(parents=True, exist_ok=True)
    with _adding:
        known = library.twin(space.loras, source)
        if known is not None:
            raise ApiError(f"{source.name} is in the library already, as {known.name}.", 409)
        # staged, then linked under a free name: never over a file an upload, a rename or a restore placed under
        # that name a moment ago (_adding holds other adds only)
        staged = space.loras / f".comfyui-{secrets.token_hex(4)}.tmp"
        place_file(source, staged)
        try:
            chosen = settle(staged, space.loras, source.name)
        finally:
            staged.unlink(missing_ok=True)
        library_facts.write_source(space.loras / chosen, {COMFYUI_FILE: "/".join(parts)})
    return jsonify({"file": chosen, "layout": None if layout == "ours" else layout}), 201


def comfyui_name(space, name: str) -> str:
    """The name ComfyUI's loras knows the library file `name` by, for a workflow's LoraLoader: its own when the library
    placed it there (the same file or bytes), else the file of ComfyUI's it was added from (in a subfolder, or named
    otherwise: "ink wash.safetensors" is the library's ink-wash.safetensors) while that is still there; else `name`."""
    folder = space.comfyui_loras
    try:
        ours = confined(space.loras, name)
    except UnsafePathError:
        return name
    if folder is None or not folder.is_dir() or library.same_bytes(folder / ours.name, ours):
        return name
    origin = library_facts.read_source(ours).get(COMFYUI_FILE)
    if not isinstance(origin, str):
        return name
    try:
        found = confined(folder, *origin.split("/")).is_file()
    except UnsafePathError:
        found = False
    return origin if found else name


def _layout(path: Path, stat) -> str | None:
    """zimage_layout of the file at `path` (None for another model's, an unreadable one, OFT or DoRA), read once per
    version of the file: the page asks each time its cards load, and a ComfyUI folder may hold hundreds of LoRAs."""
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _layouts:
        try:
            _layouts[key] = zimage_layout(read_header(path))
        except (OSError, LoraFileError):
            _layouts[key] = None
        while len(_layouts) > LAYOUTS_KEPT:
            _layouts.pop(next(iter(_layouts)))
    return _layouts[key]


def _added(loras: Path) -> set[str]:
    """The ComfyUI files the library's files came from (their records: added from there, or converted from a file
    ComfyUI has too), while those library files are there."""
    found = set()
    for record in (loras / library_facts.SOURCES_DIR).glob("*.json"):
        if (loras / record.stem).is_file():
            source = library_facts.read_source(loras / record.stem)
            if isinstance(source.get(COMFYUI_FILE), str):
                found.add(source[COMFYUI_FILE])
    return found


def _library_files(loras: Path) -> tuple[set[tuple[int, int]], dict[int, list[Path]]]:
    """(device, inode) of every library file (ComfyUI's copies the library placed are these same files), and the
    library's files by size (only one of the same size can have the same bytes: read then, not before)."""
    held, sizes = set(), {}
    for path in loras.glob("*.safetensors"):
        try:
            stat = path.stat()
        except OSError:
            continue
        held.add((stat.st_dev, stat.st_ino))
        sizes.setdefault(stat.st_size, []).append(path)
    return held, sizes
