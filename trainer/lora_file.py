"""What a Z-Image LoRA file holds, read from its .safetensors header without loading a tensor (and without
torch, so the web process can check one): which modules of the transformer it trains and at which rank.

The module names are those of the diffusers transformer (`layers.N.attention.to_q`, ...); a file may prefix
them with `diffusion_model.` (ComfyUI, ai-toolkit, this studio) or `transformer.` (diffusers).
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

# Every Linear of the main `layers.N` blocks: attention q/k/v/out, SwiGLU w1/w2/w3, adaLN (ai-toolkit's set)
BASE_REPO = "Tongyi-MAI/Z-Image-Turbo"  # the model every LoRA here is for (torch-free, for the web pages too)
LORA_TARGET = r"^layers\.\d+\.(attention\.(to_q|to_k|to_v|to_out\.0)|feed_forward\.(w1|w2|w3)|adaLN_modulation\.0)$"
# a Linear of any of the transformer's blocks (other trainers, musubi-tuner's among them, train the refiners' too)
ZIMAGE_MODULE = (r"^(layers|noise_refiner|context_refiner)\.\d+\.(attention\.(to_q|to_k|to_v|to_out\.0)|"
                 r"feed_forward\.(w1|w2|w3)|adaLN_modulation\.0)$")
# lora_targets -> the main blocks' modules that get a LoRA ("all" is what ai-toolkit trains)
LORA_TARGETS = {
    "all": LORA_TARGET,
    "attention+feed_forward": r"^layers\.\d+\.(attention\.(to_q|to_k|to_v|to_out\.0)|feed_forward\.(w1|w2|w3))$",
    "attention": r"^layers\.\d+\.attention\.(to_q|to_k|to_v|to_out\.0)$",
}
PREFIXES = ("diffusion_model.", "transformer.")
START_LORA_FILE = "start_lora.safetensors"  # in a job's folder: the LoRA it starts from (config init_lora)
MAX_HEADER = 50_000_000


class LoraFileError(ValueError):
    """The file is not a readable LoRA of this model; the message says what to do."""


class CutShort(LoraFileError):
    """The header is whole but the file ends before the tensors it lists (a download or copy that did not finish)."""


def read_header(path: Path) -> dict:
    """The JSON header of a .safetensors file: {key: {dtype, shape, data_offsets}, "__metadata__": {...}}; CutShort
    when the file ends before the tensors the header lists (safetensors, and so ComfyUI, refuse to load it)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            raw = handle.read(length) if length <= MAX_HEADER else None
            size = os.fstat(handle.fileno()).st_size
    except (OSError, struct.error) as exc:
        raise LoraFileError(f"{path.name} cannot be read as a .safetensors file ({exc}).") from None
    if raw is None:
        raise LoraFileError(f"{path.name} is not a .safetensors file (its header would be {length} bytes).")
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a hostile header nested deeper than Python recurses
        raise LoraFileError(f"{path.name} is not a .safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise LoraFileError(f"{path.name} is not a .safetensors file.")
    for key, info in header.items():  # what every reader of the header counts on, checked once here
        if key == "__metadata__":
            # text to text, as the format has it (safetensors itself refuses anything else): `dict(meta)` and
            # `meta.get(...)` in the readers must not meet a number or a list
            if not isinstance(info, dict) or not all(isinstance(value, str) for value in info.values()):
                raise LoraFileError(f"{path.name} is not a .safetensors file (its __metadata__ is not text names "
                                    "and values).")
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in shape):
            raise LoraFileError(f"{path.name} is not a LoRA file this studio can read ({key[:80]}: its header gives "
                                "no list of sizes as its shape).")
    _check_whole(path.name, header, size - 8 - length)
    return header


def _check_whole(name: str, header: dict, data_bytes: int) -> None:
    """CutShort when a tensor's data_offsets end past the `data_bytes` the file holds after its header."""
    ends = [info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"
            and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
            and isinstance(info["data_offsets"][1], int)]
    if ends and max(ends) > data_bytes:
        raise CutShort(f"{name} is cut short or damaged: it holds {max(data_bytes, 0):,} bytes of tensors where its "
                       f"header lists {max(ends):,} (a download or copy that did not finish). Get the whole file "
                       "again.")


def module_name(key: str) -> str:
    """`diffusion_model.layers.0.attention.to_q.lora_A.weight` -> `layers.0.attention.to_q`."""
    for suffix in (".lora_A.weight", ".lora_B.weight", ".alpha"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
            break
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


# a LyCORIS LoKr layer's factors: w1 and w2, each whole or as the product of its _a and _b
LOKR_FACTORS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
LOKR_PARTS = tuple(f".{name}" for name in LOKR_FACTORS)


def lokr_modules(header: dict) -> set[str]:
    """The module names of a LyCORIS LoKr file's layers (empty for a LoRA)."""
    found = set()
    for key in header:
        for suffix in LOKR_PARTS:
            if key.endswith(suffix):
                found.add(module_name(key[: -len(suffix)]))
    return found


def lora_ranks(header: dict) -> dict[str, int]:
    """{module name: rank} for every lora_A in the header."""
    out = {}
    for key, info in header.items():
        if key.endswith(".lora_A.weight") and isinstance(info, dict):
            shape = info.get("shape") or []
            out[module_name(key)] = int(shape[0]) if shape else 0
    return out


def check_trained_modules(modules, targets: str, name: str, kind: str = "LoRA") -> None:
    """LoraFileError unless every module a file trains is one of the main blocks' and inside `targets` (a
    LORA_TARGETS key): what a job going on from it needs."""
    every, chosen = re.compile(LORA_TARGET), re.compile(LORA_TARGETS[targets])
    foreign = sorted(m for m in modules if not every.match(m))
    if foreign:
        raise LoraFileError(f"{name} trains modules a Z-Image-Turbo {kind} of the main blocks does not have "
                            f"({', '.join(foreign[:3])}): it is not a {kind} for this model, or not one this studio "
                            "can go on training.")
    outside = sorted(m for m in modules if not chosen.match(m))
    if outside:
        raise LoraFileError(f"{name} also trains {outside[0]}, outside the LoRA layers '{targets}': set LoRA layers "
                            "to all (or to what it was trained on).")


def check_start_lora(path: Path, rank: int, targets: str, name: str | None = None, network: str = "lora",
                     factor: int = -1) -> None:
    """LoraFileError unless the file at `path` can start a job of LoRA rank `rank` on `targets` (a
    LORA_TARGETS key): a LoRA of the main blocks, every module at that rank, none outside the targets; for a
    job training a LoKr (`network`), a LoKr split as `factor` splits it (trainer.lokr_layout). Messages call it
    `name` (its file name by default)."""
    header = read_header(path)
    name = name or path.stem
    check_our_layout(header, name)
    ranks = lora_ranks(header)
    if network == "lokr":
        from trainer.lokr_layout import check_start_lokr

        return check_start_lokr(header, factor, targets, name)
    if not ranks and lokr_modules(header):
        raise LoraFileError(f"{name} is a LyCORIS LoKr: set Network to lokr (and its LoKr factor) to go on "
                            "training it.")
    if not ranks:
        raise LoraFileError(f"{name} holds no LoRA weights (no lora_A / lora_B pairs).")
    check_trained_modules(ranks, targets, name)
    found = sorted(set(ranks.values()))
    if len(found) > 1:
        raise LoraFileError(f"{name} has modules of ranks {found[0]} to {found[-1]}: a job trains one rank, so it "
                            "cannot start from it.")
    if found != [rank]:
        raise LoraFileError(f"{name} has rank {found[0]}, not {rank}: set the LoRA rank to {found[0]} to start "
                            "from it.")


class NotSafetensors(LoraFileError):
    """A file that does not read as safetensors at all (a web page saved instead of the file, a damaged copy)."""


def check_our_layout(header: dict, name: str) -> None:
    """LoraFileError naming what the file is when it is in another trainer's layout (a file copied into the library
    by hand: its card converts it) or one this studio cannot read (OFT, DoRA)."""
    from trainer.lora_formats import foreign_kind

    kind = foreign_kind(header)
    if kind is not None:
        raise LoraFileError(f"{name} is in {kind}, as another trainer wrote it: Convert it on its card in the LoRA "
                            "library first (ComfyUI loads it as it is).")


def zimage_lora_rank(path: Path, name: str) -> int | None:
    """The rank of the LoRA at `path` (the largest of its layers; None for a LyCORIS LoKr, which has none);
    LoraFileError with a sentence when it is not a LoRA (or LoKr) of Z-Image's layers. Messages call it `name`."""
    try:
        header = read_header(path)
    except CutShort as exc:  # said of `name`, not of the name the file has on its way in
        raise CutShort(name + str(exc).removeprefix(path.name)) from None
    except LoraFileError:
        raise NotSafetensors(f"{name} is not a .safetensors file (or it is damaged or cut short).") from None
    check_our_layout(header, name)
    ranks: dict = lora_ranks(header)
    kron = set() if ranks else lokr_modules(header)  # a LoKr: its layers, without a rank
    if kron:
        ranks = dict.fromkeys(kron)
    if not ranks:
        raise LoraFileError(f"{name} holds no LoRA layers this studio reads (lora_A/lora_B pairs, the names "
                            "ComfyUI, ai-toolkit and diffusers use for Z-Image).")
    foreign = sorted(module for module in ranks if not re.match(ZIMAGE_MODULE, module))
    if foreign:
        raise LoraFileError(f"{name} is not a LoRA of Z-Image's layers (it has {foreign[0]}"
                            f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}): a LoRA of another "
                            "model.")
    return None if kron else max(ranks.values())
