"""Add a LoRA to the library from a link: a Hugging Face file (its page or its download) or model repo (its one
.safetensors file: trainer.hf_lora_link), a Civitai model's page or download link (Civitai is asked about it first:
trainer.civitai), a Dropbox or Google Drive share, any direct https link. The pod downloads it at datacentre speed,
brings another trainer's key names to this studio's (trainer.lora_formats), checks it is a LoRA of Z-Image's
layers, and places it in the library (and ComfyUI's loras), where it can start a new job ("Train further"), be
tried, be made smaller, or be loaded in ComfyUI.

    POST /api/library/import {"url"}   -> 202 {"job"}: a job of the one job store, kind "lora-import"
    GET  /api/library/imports           -> {"imports": [the latest ones]}

Fetched like the dataset manager's links (app.link_fetch): every redirect hop is checked, private addresses are
refused unless ALLOW_PRIVATE_URLS, at most MAX_UPLOAD_MB. Nothing reaches the library unless it is whole and a
LoRA of this model.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import time
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify

from app import link_fetch
from app.executor import JobExecutor
from app.url_import import check_url, direct_link
from studio.jobs import JobError
from studio.web import ApiError, json_body
from studio.workspace import confined
from trainer import civitai, hf_lora_link, library, library_facts
from trainer.lora_file import LOKR_PARTS, LoraFileError, NotSafetensors, module_name, read_header, zimage_lora_rank
from trainer.lora_formats import converted_if_needed

bp = Blueprint("lora_import", __name__)

KIND = "lora-import"
INCOMING = ".incoming"  # in the library folder: downloads until they are checked
INCOMING_IDLE_S = 6 * 3600  # a file there nothing wrote to for this long was left by a restart


def sweep_incoming(loras: Path, idle_s: float = INCOMING_IDLE_S) -> int:
    """Removes what a download, upload or conversion cut short by a restart left in the library's INCOMING folder
    (a file nothing wrote to for `idle_s`: one in progress is written to all along); returns how many went."""
    removed, now = 0, time.time()
    for path in (loras / INCOMING).glob("*") if (loras / INCOMING).is_dir() else ():
        try:
            if path.is_file() and now - path.stat().st_mtime > idle_s:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def executor() -> JobExecutor:
    return current_app.extensions["lora_imports"]


def checked_lora(path: Path, name: str, link: bool = False) -> int:
    """The rank of the LoRA at `path`; JobError with a sentence when it is not a LoRA of Z-Image's layers (from a
    `link`, a file that is no safetensors at all is most often the page that shows it: the sentence says so), or one
    no reader can load (loadable_or_error)."""
    try:
        rank = zimage_lora_rank(path, name)
        loadable_or_error(read_header(path), name)
        finite_or_error(path, name)
        return rank
    except NotSafetensors as exc:
        raise JobError(f"{exc} Use the link of the file itself (on Hugging Face the file's page or its download; a "
                       "page that shows it is not the file)." if link else str(exc)) from None
    except LoraFileError as exc:
        raise JobError(str(exc)) from None


def finite_or_error(path: Path, name: str) -> None:
    """LoraFileError when a weight of the file is NaN or infinite (a training that diverged, a broken conversion):
    ComfyUI would load it and render black or noise pictures without a word. Read one tensor at a time."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise LoraFileError(f"{name} holds NaN or infinite weights ({key[:80]}): the training that made it "
                                    "went wrong (its loss blew up), and it would render black or noise pictures. Use "
                                    "an earlier checkpoint of it.")


# bytes per number of safetensors' dtypes; a LoRA's weights are one of the floating point ones
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
               "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
FLOATS = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
WEIGHT_PARTS = (".lora_A.weight", ".lora_B.weight", *LOKR_PARTS)


def loadable_or_error(header: dict, name: str) -> None:
    """LoraFileError unless safetensors (so ComfyUI and diffusers) can load the file and apply each layer, read from
    its header alone: every tensor's bytes are what its shape and dtype make, one after another; the weights are
    floating point; each lora_A has a lora_B of its rank."""
    tensors = {key: info for key, info in header.items() if key != "__metadata__"}
    spans = []
    for key, info in tensors.items():
        dtype, offsets = info.get("dtype"), info.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise LoraFileError(f"{name} is damaged: {key[:80]} is of an unknown dtype {str(dtype)[:20]!r}.")
        if dtype not in FLOATS and key.endswith(WEIGHT_PARTS):
            raise LoraFileError(f"{name} is not a LoRA that can be applied: {key[:80]} holds {dtype} numbers, where a "
                                "LoRA's weights are floating point (F32, F16 or BF16).")
        want = math.prod(info["shape"]) * DTYPE_BYTES[dtype]
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(n) is int for n in offsets)
                or offsets[1] - offsets[0] != want):
            raise LoraFileError(f"{name} is damaged: its header gives {key[:80]} other bytes than its shape and dtype "
                                "make, and safetensors (so ComfyUI and diffusers) refuses to load it.")
        spans.append(offsets)
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise LoraFileError(f"{name} is damaged: its tensors' bytes overlap or leave gaps, and safetensors (so "
                                "ComfyUI and diffusers) refuses to load it.")
        end = stop
    for key, info in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        down, up = info["shape"], (tensors.get(key.removesuffix("lora_A.weight") + "lora_B.weight") or {}).get("shape")
        if len(down) < 2 or not down[0] or not up or len(up) < 2 or up[1] != down[0]:
            raise LoraFileError(f"{name} is not a LoRA that can be applied: its layer {module_name(key)[:80]} has no "
                                "lora_B of its lora_A's rank beside it.")


def _fetch(job, url: str, target: Path, conf, found, hub) -> link_fetch.Fetched:
    """The download; Civitai's or the hub's refusal of an anonymous download said with what to do about it."""
    try:
        return link_fetch.fetch_to(job, url, target, conf.max_upload_mb * 2**20, conf.allow_private_urls, hub)
    except JobError as exc:
        if not re.search(r"answered (401|403)\b", str(exc)):
            raise
        if found:
            raise JobError(f"Civitai wants a signed-in account for “{found.title}”: set CIVITAI_TOKEN to an API key "
                           "of yours (civitai.com, Account settings, API Keys) and add the link again.") from None
        if hf_lora_link.is_hub(url, conf.hf_endpoint):
            raise JobError(hf_lora_link.private_message("This file", hub is not None)) from None
        raise


def in_our_names(job, path: Path, name: str):
    """The download rewritten in this studio's key names when another trainer's (kohya's, the original
    checkpoint's fused qkv, a LoHa: trainer.lora_formats); JobError with the reason when it cannot be."""

    def progress(done: int, total: int) -> None:
        job.update(phase="converting", done=done, total=total,
                   message=f"Writing {name}'s LoHa layers as a LoRA: {done} of {total}")
        job.check_stop()

    try:
        return converted_if_needed(path, progress)
    except LoraFileError as exc:  # said of `name`, not of the random name it has on its way in
        said = str(exc).replace(path.name, name)
        raise JobError(said if said.startswith(name) else f"{name}: {said}") from None


def free_name(folder: Path, name: str, comfyui: Path | None = None) -> str:
    """`name` as a .safetensors file name not taken in `folder`, nor (case aside) in ComfyUI's loras `comfyui`, whose
    own files a library file's copy must not replace (name-2, name-3, ... when it is)."""
    stem = re.sub(r"[^\w.+-]+", "-", unicodedata.normalize("NFC", Path(name).stem)).strip("-.") or "lora"
    theirs = {path.name.lower() for path in comfyui.glob("*")} if comfyui is not None and comfyui.is_dir() else set()
    candidate, number = f"{stem}.safetensors", 2
    while (folder / candidate).exists() or candidate.lower() in theirs:
        candidate, number = f"{stem}-{number}.safetensors", number + 1
    return candidate


def settle(incoming: Path, folder: Path, name: str, comfyui: Path | None = None) -> str:
    """Moves the checked download into `folder` under a free name (never over a file there, even one another import
    placed a moment ago, nor one ComfyUI's loras `comfyui` has) and returns that name."""
    while True:
        chosen = free_name(folder, name, comfyui)
        try:
            os.link(incoming, folder / chosen)  # fails when the name was taken meanwhile
        except FileExistsError:
            continue
        except OSError:  # a disk without hard links: the first free name, at once
            os.replace(incoming, folder / chosen)
        return chosen


def add_to_library(job, space, incoming: Path, name: str, source: dict | None, found=None) -> dict:
    """The file at `incoming` (a download or an upload, called `name`) in another trainer's names brought to this
    studio's, checked to be a LoRA of Z-Image's layers, and placed in the library and ComfyUI's loras under a free
    name; `source` kept beside it (where it came from). JobError with the reason when it is not; `incoming` goes
    either way. The job's result."""
    try:
        converted = in_our_names(job, incoming, name)
        rank = checked_lora(incoming, name, link=bool(source and "url" in source))
        known = library.twin(space.loras, incoming)  # the same LoRA added before: not a second copy
        chosen = known.name if known else settle(incoming, space.loras, name, space.comfyui_loras)
    finally:
        incoming.unlink(missing_ok=True)
    if source and not (known and library_facts.source_file(known).is_file()):  # beside the file left byte for byte
        library_facts.write_source(space.loras / chosen, source)  # (from Civitai its title and trigger words too)
    placed = [str(path) for path in library.also_in_comfyui(space, space.loras / chosen)]
    how = f", converted from {' and '.join(converted.notes)}" if converted and converted.notes else ""
    kind = "a LyCORIS LoKr" if rank is None else f"rank {rank}"
    origin = f" “{found.title}” from Civitai" if found else ""
    words = f"; trigger {', '.join(found.trigger_words)}" if found and found.trigger_words else ""
    if known:
        job.update(message=f"{found.title if found else name} is in the library already, as {chosen} (the same "
                           f"file, {kind}{how}): nothing was added.")
    else:
        job.update(message=f"Added{origin} as {chosen} ({kind}{how}{words}) to the library." if found
                   else f"Added {chosen} ({kind}{how}) to the library.")
    return {**({"url": source["url"]} if source and "url" in source else {}), "file": chosen, "rank": rank,
            "size": (space.loras / chosen).stat().st_size, "placed": placed, "already": bool(known),
            "converted_from": converted.notes if converted else None,
            "civitai": {"title": found.title, "version_id": found.version_id, "base_model": found.base_model,
                        "trigger_words": found.trigger_words, "page": found.page} if found else None}


@bp.post("/api/library/import")
def import_lora():
    from trainer.jobs_api import settings, workspace

    given = check_url(json_body().get("url"))
    url, conf = direct_link(given), settings()
    try:
        link_fetch.checked_address(url, conf.allow_private_urls)  # a refused address answers now
    except (link_fetch.BlockedAddress, JobError) as exc:
        raise ApiError(str(exc), 422) from None
    space = workspace()

    def work(job) -> dict:
        incoming = confined(space.loras, INCOMING, f"{secrets.token_hex(8)}.safetensors")
        try:
            job.update(phase="downloading", message=f"Connecting to {urlsplit(url).hostname}")
            found = civitai.lookup(url, api_base=conf.civitai_url, token=conf.civitai_token,
                                   allow_private=conf.allow_private_urls)  # another model's LoRA: refused here
            hub = hf_lora_link.credentials(conf.hf_endpoint, conf.hf_token)
            link = found.download if found else (hf_lora_link.model_file_link(
                url, endpoint=conf.hf_endpoint, allow_private=conf.allow_private_urls, auth=hub) or url)
            fetched = _fetch(job, link, incoming, conf, found, None if found else hub)
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        return add_to_library(job, space, incoming, fetched.name, {"url": shown} if not found else {
            "url": shown, "civitai_url": found.page, "title": found.title, "trigger_words": found.trigger_words},
            found)

    shown = link_fetch.shown_link(given)  # a token in the link is used, never recorded nor shown
    job = executor().submit(KIND, "", work, name=f"LoRA from {urlsplit(given).hostname}", config={"url": shown})
    return jsonify({"job": job.public()}), 202


@bp.get("/api/library/imports")
def list_imports():
    from trainer.jobs_api import store

    return jsonify({"imports": [job.public() for job in store().list(kind=KIND, limit=10)]})
