"""Z-Image LoRA files in the key names other trainers write, brought to this studio's (ai-toolkit's and diffusers'):
`diffusion_model.<module>.lora_A.weight` and `.lora_B.weight` for each Linear of the diffusers transformer, alpha
folded into B. Read as such by the trainer ("Train further"), Try the LoRA, Make smaller and ComfyUI.

- kohya and musubi-tuner: `lora_unet_layers_0_attention_to_q.lora_down.weight`, `.lora_up.weight` and `.alpha`
  (the module's dots written as underscores); the LyCORIS library (SimpleTuner's files) alike as `lycoris_layers_0_…`;
- `lora_down`/`lora_up` under dotted names, and the prefixes `transformer.`, `base_model.model.`;
- the layout of Z-Image's original checkpoint (ComfyUI's): the attention's q, k and v as one `attention.qkv` (its
  B split into three blocks of rows, each with the same A, columns that are zero for a block dropped: the change is
  exactly the same) and `attention.out` for `to_out.0`.

A LyCORIS LoKr gets the same module names, its factors and alpha kept (trainer.engine.lokr tries it). A LyCORIS LoHa
becomes a LoRA, exactly up to dim 16 (trainer.loha_lora). OFT and DoRA are refused with a sentence.
Torch-free (numpy), so the web process converts a download at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.atomic import atomic_write_bytes
from trainer.loha_lora import FACTORS as LOHA_FACTORS
from trainer.loha_lora import loha_pairs
from trainer.lora_file import LOKR_FACTORS, ZIMAGE_MODULE, LoraFileError, read_header
from trainer.lora_resize import encode, read_tensors

PARTS = {".lora_A.weight": "A", ".lora_down.weight": "A", ".lora_B.weight": "B", ".lora_up.weight": "B",
         ".alpha": "alpha", **{f".{part}": part for part in LOKR_FACTORS + LOHA_FACTORS}}
DOTTED = ("diffusion_model.", "transformer.", "base_model.model.")
KOHYA = ("lora_unet_", "lora_transformer_")
LYCORIS = ("lycoris_",)  # the LyCORIS library's own names (lycoris-lora's networks: SimpleTuner's LoKrs and LoRAs)
UNDERSCORED = KOHYA + LYCORIS
BLOCK = re.compile(r"(layers|noise_refiner|context_refiner)_(\d+)_(\w+)")
# a block's Linears, underscored -> dotted (the original checkpoint's fused qkv and out among them)
SUBMODULES = {"attention_to_q": "attention.to_q", "attention_to_k": "attention.to_k",
              "attention_to_v": "attention.to_v", "attention_to_out_0": "attention.to_out.0",
              "attention_qkv": "attention.qkv", "attention_out": "attention.out", "feed_forward_w1": "feed_forward.w1",
              "feed_forward_w2": "feed_forward.w2", "feed_forward_w3": "feed_forward.w3",
              "adaLN_modulation_0": "adaLN_modulation.0"}
FUSED = {"attention.qkv": ("attention.to_q", "attention.to_k", "attention.to_v")}
RENAMED = {"attention.out": "attention.to_out.0"}
FOREIGN = {".hada_t1": "a LyCORIS LoHa of convolutions (hada_t1)",
           ".lokr_t2": "a LyCORIS LoKr of convolutions (lokr_t2)", ".oft_blocks": "an OFT file",
           ".dora_scale": "a DoRA file"}
OURS = "diffusion_model."


@dataclass(frozen=True)
class Converted:
    modules: int  # LoRA layers written
    notes: list[str]  # what was changed, for the import's message ("kohya's key names", ...)


def _split(key: str) -> tuple[str, str] | None:
    """(module name in the diffusers transformer, "A" | "B" | "alpha") of a LoRA key; None for any other key."""
    found = next(((key[: -len(suffix)], part) for suffix, part in PARTS.items() if key.endswith(suffix)), None)
    if found is None:
        return None
    stem, part = found
    for prefix in UNDERSCORED:
        if stem.startswith(prefix):
            found = BLOCK.fullmatch(stem[len(prefix):])
            if found and found[3] in SUBMODULES:
                stem = f"{found[1]}.{found[2]}.{SUBMODULES[found[3]]}"
            return stem, part  # an unknown one keeps its name: the import's check names it
    for prefix in DOTTED:
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
            break
    return stem, part


def _tail(module: str) -> str:
    """`layers.3.attention.qkv` -> `attention.qkv`."""
    parts = module.split(".")
    return ".".join(parts[2:]) if len(parts) > 2 and parts[1].isdigit() else module


def needs_converting(header: dict) -> bool:
    """Whether a file's keys are other than this studio's (every key `diffusion_model.` or `transformer.`, lora_A
    and lora_B, no fused module) or it is a LoHa; raises LoraFileError for an OFT or DoRA file."""
    for key in header:
        for suffix, kind in FOREIGN.items():
            if key.endswith(suffix) or f"{suffix}." in key:
                raise LoraFileError(f"This is {kind}, not a LoRA: ComfyUI loads it as it is, but this studio "
                                    "trains and resizes LoRAs, and tries LoRAs and LoKrs, only.")
    for key in header:
        split = _split(key)
        if key == "__metadata__" or split is None:
            continue
        module, part = split
        if part.startswith("hada_"):
            return True
        plain = key.startswith(("diffusion_model.", "transformer.")) and not key.endswith((".lora_down.weight",
                                                                                        ".lora_up.weight"))
        if not plain or _tail(module) in FUSED or _tail(module) in RENAMED:
            return True
    return False


def foreign_kind(header: dict) -> str | None:
    """What a file in another trainer's layout is, from its header alone ("kohya's key names", "a LyCORIS LoHa",
    "the original checkpoint's fused qkv", joined by "and"), for its library card; None when it is in this studio's
    names. LoraFileError for an OFT or DoRA file (needs_converting)."""
    if not needs_converting(header):
        return None
    keys = [key for key in header if key != "__metadata__"]
    splits = [split for split in map(_split, keys) if split]
    modules = {module for module, _ in splits}
    notes = _notes(keys) + (["a LyCORIS LoHa"] if any(part.startswith("hada_") for _, part in splits) else [])
    if any(_tail(module) in FUSED for module in modules):
        notes.append("the original checkpoint's fused qkv")
    elif any(_tail(module) in RENAMED for module in modules):
        notes.append("the original checkpoint's module names")
    return " and ".join(notes) or "other key names"


def zimage_layout(header: dict) -> str | None:
    """What a file is, from its header alone: "ours" (a LoRA or LoKr in this studio's names), the other trainer's
    layout it is in (foreign_kind), or None when its layers are not Z-Image's (another model's LoRA, not a LoRA).
    LoraFileError for an OFT or DoRA file (needs_converting)."""
    modules = set()
    for key in header:
        split = _split(key) if key != "__metadata__" else None
        if split is not None:
            modules.update(_ours(split[0]))
    if not modules or not all(re.match(ZIMAGE_MODULE, module) for module in modules):
        return None
    return foreign_kind(header) or "ours"


def _grouped(tensors: dict[str, np.ndarray], name: str) -> dict[str, dict[str, np.ndarray]]:
    """{module: {part: tensor}} of a file's layers; LoraFileError for a key that is no part of one."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        split = _split(key)
        if split is None:
            raise LoraFileError(f"{name} holds {key}, which is not part of a LoRA layer this studio reads.")
        module, part = split
        grouped.setdefault(module, {})[part] = value
    return grouped


def _pairs(tensors: dict[str, np.ndarray], name: str, progress=None) -> tuple[dict[str, dict[str, np.ndarray]],
                                                                            str | None, float]:
    """({module: {"A", "B", maybe "alpha"}}, the note and kept share of a LoHa brought to a LoRA, else None and 1)."""
    pairs = _grouped(tensors, name)
    if any(part.startswith("hada_") for parts in pairs.values() for part in parts):
        return loha_pairs(pairs, name, progress)
    for module, parts in pairs.items():
        if "A" not in parts or "B" not in parts:
            raise LoraFileError(f"{name}: the layer {module} has only half of its LoRA (lora_down/lora_A and "
                                "lora_up/lora_B go together).")
        if parts["A"].ndim != 2 or parts["B"].ndim != 2 or parts["B"].shape[1] != parts["A"].shape[0]:
            raise LoraFileError(f"{name}: the layer {module} is not a LoRA of a Linear (shapes "
                                f"{list(parts['A'].shape)} and {list(parts['B'].shape)}).")
    return pairs, None, 1.0


def _unfused(module: str, down: np.ndarray, up: np.ndarray, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A fused module's LoRA as the LoRAs of the Linears it stands for (the rows of B in their order)."""
    targets = _ours(module)
    if up.shape[0] % len(targets):
        raise LoraFileError(f"{name}: {module} has {up.shape[0]} outputs, which do not split into "
                            f"{len(targets)} equal parts.")
    size = up.shape[0] // len(targets)
    out = {}
    for index, target in enumerate(targets):
        block = up[index * size:(index + 1) * size]
        keep = np.flatnonzero(np.any(block != 0, axis=0))  # a block-diagonal B: only this Linear's columns
        if keep.size:
            out[target] = (down[keep], block[:, keep])
    return out


def convert(source: Path, target: Path, progress: Callable[[int, int], None] | None = None) -> Converted:
    """Writes `target` (may be `source`): the LoRA of `source` in this studio's key names, its dtype and metadata
    kept (`converted_from` added). LoraFileError with a sentence when it cannot. `progress(done, total)` hears of
    each LoHa layer brought to a LoRA."""
    header, tensors = read_tensors(source)
    needs_converting(header)  # OFT and DoRA: refused with their name
    if any((_split(key) or ("", ""))[1].startswith("lokr") for key in tensors):
        return _renamed_lokr(header, tensors, source, target)
    pairs, loha, kept = _pairs(tensors, source.name, progress)
    if not pairs:
        raise LoraFileError(f"{source.name} holds no LoRA layers.")
    notes = _notes(tensors) + ([loha] if loha else [])
    out: dict[str, np.ndarray] = {}
    for module, parts in pairs.items():
        down, up = parts["A"], parts["B"]
        alpha = parts.get("alpha")
        if alpha is not None:  # folded: ComfyUI and this studio read a file without alpha keys at scale 1
            up = up * (float(alpha.reshape(-1)[0]) / down.shape[0])
        if _tail(module) in FUSED:
            layers = _unfused(module, down, up, source.name)
            note = "the original checkpoint's fused qkv"
        else:
            layers = {_renamed(module): (down, up)}
            note = None
        for layer, (layer_down, layer_up) in layers.items():
            if f"{OURS}{layer}.lora_A.weight" in out:
                raise LoraFileError(f"{source.name} holds the layer {layer} twice (fused and on its own).")
            out[f"{OURS}{layer}.lora_A.weight"], out[f"{OURS}{layer}.lora_B.weight"] = layer_down, layer_up
        if note and note not in notes:
            notes.append(note)
    dtype = next(info["dtype"] for key, info in header.items() if (_split(key) or ("", ""))[1] in ("A", "hada_w1_a"))
    if loha:
        from trainer.lokr_lora import lora_metadata

        header = {**header, "__metadata__": lora_metadata(header, max(len(parts["A"]) for parts in pairs.values()),
                                                          loha_kept=f"{kept:.4f}")}
    _write(target, header, out, notes, dtype)
    return Converted(len(out) // 2, notes)


def _notes(keys) -> list[str]:
    if any(key.startswith(KOHYA) for key in keys):
        return ["kohya's key names"]
    if any(key.startswith(LYCORIS) for key in keys):
        return ["LyCORIS' key names"]
    if any(key.endswith((".lora_down.weight", ".lora_up.weight")) for key in keys):
        return ["lora_down/lora_up names"]
    return []


def _renamed_lokr(header: dict, tensors: dict[str, np.ndarray], source: Path, target: Path) -> Converted:
    """A LyCORIS LoKr in this studio's module names, its factors and alpha as they are (they are read as ComfyUI
    reads them: trainer.engine.lokr)."""
    out, modules = {}, set()
    for key, value in tensors.items():
        split = _split(key)
        if split is None:
            raise LoraFileError(f"{source.name} holds {key}, which is not part of a LoKr layer this studio reads.")
        module, part = split
        if _tail(module) in FUSED:
            raise LoraFileError(f"{source.name} is a LoKr of the original checkpoint's fused qkv ({module}): it cannot "
                                "be split into the q, k and v this studio renders with; ComfyUI loads it as it is.")
        module = _renamed(module)
        out[f"{OURS}{module}.{part}"] = value
        modules.add(module)
    notes = _notes(tensors)
    _write(target, header, out, notes,
           next(info["dtype"] for key, info in header.items() if key != "__metadata__" and not key.endswith(".alpha")))
    return Converted(len(modules), notes)


def _ours(module: str) -> list[str]:
    """The module names of this studio's layout that `module` becomes: a fused one's Linears in the order of its B's
    rows (`layers.3.attention.qkv` -> its to_q, to_k, to_v), a renamed one's new name, else itself."""
    fused = FUSED.get(_tail(module))
    return [module[: -len(_tail(module))] + part for part in fused] if fused else [_renamed(module)]


def _renamed(module: str) -> str:
    """`layers.3.attention.out` -> `layers.3.attention.to_out.0` (the original checkpoint's names for the
    diffusers transformer's); other names as they are."""
    renamed = RENAMED.get(_tail(module))
    return module[: -len(_tail(module))] + renamed if renamed else module


def _write(target: Path, header: dict, out: dict[str, np.ndarray], notes: list[str], dtype: str) -> None:
    """The converted file, in the source's dtype and metadata, saying what it was converted from."""
    meta = {**(header.get("__metadata__") or {}), "converted_from": ", ".join(notes) or "other key names"}
    atomic_write_bytes(target, encode(out, dtype, meta))


def converted_if_needed(path: Path, progress: Callable[[int, int], None] | None = None) -> Converted | None:
    """`path` rewritten in this studio's key names (a LoHa as a LoRA) when it has others; None when it is in them
    already."""
    try:
        header = read_header(path)
    except LoraFileError:
        return None  # not a .safetensors file at all: the import's check says so
    if not needs_converting(header):
        return None
    return convert(path, path, progress)
