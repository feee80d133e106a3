"""Merge LoRAs into one file: each at its own strength, as chained LoRA loaders in ComfyUI (or Try it's With) apply
them, in one LoRA to share or load once.

Each layer's change is the sum Σ wᵢ·sᵢ·Bᵢ·Aᵢ (w: the strength asked for, s: the file's alpha / rank). Stacked, that sum
is one LoRA exactly: B = [w₁s₁B₁ … wₙsₙBₙ] beside each other, A = [A₁; …; Aₙ] below each other, of rank Σ rᵢ; so the
merge loses nothing, and its rank is the sum of the files'. A lower `rank` keeps each layer's largest directions
(trainer.lora_resize.resize_pair, as Make smaller does) and says how much of the merged change stays. Layers only
some files have are merged from those, zero-padded to the file's rank, so a job can go on from it. Torch-free
(numpy), like Make smaller.

A LyCORIS LoKr joins a merge at a rank: a LoKr's change (a Kronecker product, usually of high rank) has no exact
LoRA form, so each of its layers enters through its `rank` largest directions (trainer.lokr_lora.kron_lora, exact
and quick through its factors' SVDs) and `kept` is measured against the true sum, LoKr whole (inner products through
the factors, never the full matrices).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.atomic import atomic_write_bytes
from trainer.lokr_lora import kron_inner, kron_lora, kron_lowrank_inner, lowrank_inner
from trainer.lokr_resize import layer_factors, lokr_layers
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


def _layers(name: str, header: dict, tensors: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """{layer key prefix in this studio's names: ("lora", A, B with the file's alpha / rank folded in) or ("lokr", w1
    with its scale folded in, w2)} of one file."""
    if lokr_modules(header):
        return {_ours(prefix): ("lokr", *layer_factors(parts, prefix, name))
                for prefix, parts in lokr_layers(tensors).items()}
    out = {_ours(prefix): ("lora", down, up * scale)
           for prefix, (down, up, scale) in lora_layers(tensors, name).items()}
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
    stacked: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # the LoRAs' exact pieces, then the LoKrs' tops
    krons: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # the LoKrs' changes, whole: (w1 · strength, w2)
    dtypes, shapes = [], {}
    for path, strength in sources:
        header, tensors = read_tensors(path)
        dtypes.append(next(info["dtype"] for key, info in header.items() if key != "__metadata__"))
        if rank is None and lokr_modules(header):
            raise LoraFileError(f"{path.name} is a LyCORIS LoKr: its change has no exact LoRA form, so a merge with "
                                "it needs a rank (its largest directions join the merge).")
        for prefix, (kind, first, second) in _layers(path.name, header, tensors).items():
            size = (first.shape[1], second.shape[0]) if kind == "lora" else \
                (first.shape[1] * second.shape[1], first.shape[0] * second.shape[0])
            if shapes.setdefault(prefix, size) != size:
                raise LoraFileError(f"{path.name} changes {prefix} as {size[0]} in, {size[1]} out; another file as "
                                    f"{shapes[prefix][0]} in, {shapes[prefix][1]} out: they are LoRAs of different "
                                    "models.")
            if kind == "lora":
                stacked.setdefault(prefix, []).append((first, second * strength))
            else:
                krons.setdefault(prefix, []).append((first * strength, second))
    out, kept, whole = {}, 0.0, 0.0
    for prefix in {**stacked, **krons}:
        try:
            down, up, part, total = _merged_layer(stacked.get(prefix, []), krons.get(prefix, []), rank)
        except (np.linalg.LinAlgError, ValueError) as exc:  # NaN or infinite weights
            raise LoraFileError(f"The layer {prefix} cannot be merged ({exc}).") from None
        kept, whole = kept + part, whole + total
        out[f"{prefix}.lora_A.weight"], out[f"{prefix}.lora_B.weight"] = down, up
    share = (kept / whole) ** 0.5 if whole > 0 else 1.0
    top = max(a.shape[0] for key, a in out.items() if key.endswith(".lora_A.weight"))
    for prefix in {**stacked, **krons}:  # one rank throughout (zero rows and columns change nothing): a job can go on
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



def _merged_layer(exact: list[tuple[np.ndarray, np.ndarray]], krons: list[tuple[np.ndarray, np.ndarray]],
                  rank: int | None) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(A, B, kept squared norm, whole squared norm) of one layer: the LoRAs' pieces `exact` and the LoKrs' largest
    directions stacked, then at `rank` (None: exact, nothing measured)."""
    tops = [kron_lora(w1, w2, rank)[:2] for w1, w2 in krons]
    down = np.concatenate([a for a, _b in exact + tops], axis=0)
    up = np.concatenate([b for _a, b in exact + tops], axis=1)
    if not (np.isfinite(down).all() and np.isfinite(up).all()):
        raise ValueError("its weights are not finite")
    if rank is not None and rank < down.shape[0]:
        down, up, part, total = resize_pair(down, up, 1.0, rank)
    elif rank is not None:  # a layer within the rank stays exact; its norm still counts toward `kept`
        part = total = resize_pair(down, up, 1.0, down.shape[0])[3]
    else:
        part = total = 0.0
    if krons:
        part, total = _kept_of_true_sum(exact, krons, down, up)
    return down, up, part, total


def _kept_of_true_sum(exact: list[tuple[np.ndarray, np.ndarray]], krons: list[tuple[np.ndarray, np.ndarray]],
                      down: np.ndarray, up: np.ndarray) -> tuple[float, float]:
    """(‖Δ‖² − ‖Δ − Δ'‖², ‖Δ‖²) of a layer with LoKrs: Δ the true sum (the LoRAs' pieces `exact` and the LoKrs' `krons`,
    whole), Δ' = up · down the merged file's. For a plain truncated SVD it is (kept, whole) as resize_pair gives them,
    so the file's `kept` means the same with LoKrs in it."""
    whole = sum(kron_inner(first, second) for first in krons for second in krons)
    cross = sum(kron_lowrank_inner(w1, w2, up, down) for w1, w2 in krons)
    if exact:
        lora_down = np.concatenate([a for a, _b in exact], axis=0).astype(np.float64)
        lora_up = np.concatenate([b for _a, b in exact], axis=1).astype(np.float64)
        whole += lowrank_inner(lora_up, lora_down, lora_up, lora_down)
        whole += 2 * sum(kron_lowrank_inner(w1, w2, lora_up, lora_down) for w1, w2 in krons)
        cross += lowrank_inner(lora_up, lora_down, up, down)
    own = lowrank_inner(up, down, up, down)
    return min(max(2 * cross - own, 0.0), whole), whole
