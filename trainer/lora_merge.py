"""Merge LoRAs into one file: each at its own strength, as chained LoRA loaders in ComfyUI (or Try it's With) apply
them, in one LoRA to share or load once.

Each layer's change is the sum Σ wᵢ·sᵢ·Bᵢ·Aᵢ (w: the strength asked for, s: the file's alpha / rank). Stacked, that sum
is one LoRA exactly: B = [w₁s₁B₁ … wₙsₙBₙ] beside each other, A = [A₁; …; Aₙ] below each other, of rank Σ rᵢ; so the
merge loses nothing, and its rank is the sum of the files'. A lower `rank` keeps each layer's largest directions
(trainer.lora_resize.resize_pair, as Make smaller does) and says how much of the merged change stays. Layers only
some files have are merged from those, zero-padded to the file's rank, so a job can go on from it. Torch-free
(numpy), like Make smaller.

LyCORIS LoKr files are not merged (their changes are Kronecker products: summing them is not a LoKr, and written out
as a LoRA each layer would need the SVD of its full matrix); the error says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.atomic import atomic_write_bytes
from trainer.lora_file import LoraFileError, lokr_modules
from trainer.lora_resize import encode, lora_layers, read_tensors, resize_pair

MAX_FILES = 4
SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".alpha")


@dataclass(frozen=True)
class Merged:
    path: Path
    rank: int  # the largest layer's rank in the new file
    kept: float  # the share of the merged change the file keeps (1.0 unless a lower rank was asked for)
    size: int


def _layers(name: str, header: dict, tensors: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer key prefix in this studio's names: (A, B with the file's alpha / rank folded in)} of one LoRA file."""
    if lokr_modules(header):
        raise LoraFileError(f"{name} is a LyCORIS LoKr: only LoRAs are merged (try the two together with With "
                            "instead, or chain them in ComfyUI).")
    out = {_ours(prefix): (down, up * scale) for prefix, (down, up, scale) in lora_layers(tensors, name).items()}
    if not out:
        raise LoraFileError(f"{name} holds no lora_A/lora_B pairs to merge.")
    return out


def _ours(prefix: str) -> str:
    """A layer's key prefix as this studio writes it (`diffusion_model.`), whatever the file used."""
    return "diffusion_model." + prefix.removeprefix("transformer.").removeprefix("diffusion_model.")


def merge(sources: list[tuple[Path, float]], target: Path, rank: int | None = None,
          metadata: dict[str, str] | None = None) -> Merged:
    """Writes `target`: the LoRAs of `sources` ([(file, strength)], 2 to MAX_FILES) as one LoRA, exactly (rank the
    sum of theirs) or at `rank`; LoraFileError with a sentence when it cannot. `metadata` is added to the file's."""
    if not 2 <= len(sources) <= MAX_FILES:
        raise LoraFileError(f"Merging takes 2 to {MAX_FILES} LoRAs.")
    if rank is not None and rank < 1:
        raise LoraFileError("A merged LoRA needs a rank of at least 1.")
    stacked: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    dtypes, shapes = [], {}
    for path, strength in sources:
        header, tensors = read_tensors(path)
        dtypes.append(next(info["dtype"] for key, info in header.items() if key != "__metadata__"))
        for prefix, (down, up) in _layers(path.name, header, tensors).items():
            size = (down.shape[1], up.shape[0])
            if shapes.setdefault(prefix, size) != size:
                raise LoraFileError(f"{path.name} changes {prefix} as {size[0]} in, {size[1]} out; another file as "
                                    f"{shapes[prefix][0]} in, {shapes[prefix][1]} out: they are LoRAs of different "
                                    "models.")
            stacked.setdefault(prefix, []).append((down, up * strength))
    out, kept, whole = {}, 0.0, 0.0
    for prefix, parts in stacked.items():
        down = np.concatenate([a for a, _b in parts], axis=0)
        up = np.concatenate([b for _a, b in parts], axis=1)
        if rank is not None and rank < down.shape[0]:
            down, up, part, total = resize_pair(down, up, 1.0, rank)
        elif rank is not None:  # a layer within the rank stays exact; its norm still counts toward `kept`
            part = total = resize_pair(down, up, 1.0, down.shape[0])[3]
        else:
            part = total = 0.0
        kept, whole = kept + part, whole + total
        out[f"{prefix}.lora_A.weight"], out[f"{prefix}.lora_B.weight"] = down, up
    share = (kept / whole) ** 0.5 if whole > 0 else 1.0
    top = max(a.shape[0] for key, a in out.items() if key.endswith(".lora_A.weight"))
    for prefix in stacked:  # one rank throughout (zero rows and columns change nothing): a job can go on from it
        down, up = out[f"{prefix}.lora_A.weight"], out[f"{prefix}.lora_B.weight"]
        missing = top - down.shape[0]
        if missing:
            out[f"{prefix}.lora_A.weight"] = np.concatenate([down, np.zeros((missing, down.shape[1]), down.dtype)])
            out[f"{prefix}.lora_B.weight"] = np.concatenate([up, np.zeros((up.shape[0], missing), up.dtype)], axis=1)
    names = [{"file": path.name, "strength": strength} for path, strength in sources]
    meta = {**(metadata or {}), "lora_rank": str(top), "lora_alpha": str(top), "ss_network_dim": str(top),
            "ss_network_alpha": str(top), "merged_from": json.dumps(names), "merge_kept": f"{share:.4f}",
            "format": "pt", "software": "Z-Image Studio"}
    dtype = "F32" if "F32" in dtypes else dtypes[0]  # the most precise of theirs
    data = encode(out, dtype, meta)
    atomic_write_bytes(target, data)
    return Merged(target, top, share, len(data))

