"""A LyCORIS LoHa as a LoRA, on its way into the library (trainer.lora_formats): from then on it is tried, trained
further, made smaller, merged and loaded in ComfyUI like any LoRA here.

A LoHa layer's change is scale·(w1_a·w1_b) ∘ (w2_a·w2_b), the element-wise product of two low-rank matrices, scale =
alpha / w1_b's rows (as ComfyUI and LyCORIS read it). Written out, its element (i, j) is
Σₚ Σ_q w1_a[i,p]·w2_a[i,q] · w1_b[p,j]·w2_b[q,j]: a LoRA of rank r1·r2 whose B has the columns w1_a[:,p] ∘ w2_a[:,q]
and whose A the rows w1_b[p] ∘ w2_b[q] (the face-splitting product). So a LoHa of dim 8 is exactly a LoRA of rank 64,
one of dim 16 exactly one of rank 256. One of a larger dim is written at MAX_RANK through each layer's largest
directions (trainer.lora_resize.resize_pair: the full matrix is never formed), and the share it keeps is said.
Torch-free (numpy), like the rest of the import.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trainer.lora_file import LoraFileError

MAX_RANK = 256  # a LoHa of dim 16 fits exactly; rank 256 of the full transformer is about 1.3 GB in bf16
FACTORS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")


def face_split(w1a: np.ndarray, w1b: np.ndarray, w2a: np.ndarray, w2b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A: r1·r2 x in, B: out x r1·r2) with B·A = (w1a·w1b) ∘ (w2a·w2b), each direction's column of B and row of A
    of the same norm (so neither underflows in a 16-bit file)."""
    r1, r2 = w1b.shape[0], w2b.shape[0]
    up = (w1a[:, :, None] * w2a[:, None, :]).reshape(w1a.shape[0], r1 * r2)
    down = (w1b[:, None, :] * w2b[None, :, :]).reshape(r1 * r2, w1b.shape[1])
    up_norm, down_norm = np.linalg.norm(up, axis=0), np.linalg.norm(down, axis=1)
    balance = np.sqrt(np.where(up_norm > 0, down_norm, 1.0) / np.where(up_norm > 0, up_norm, 1.0))
    balance = np.where(balance > 0, balance, 1.0)
    return down / balance[:, None], up * balance


def _factors(parts: dict[str, np.ndarray], module: str, name: str) -> tuple[np.ndarray, ...]:
    missing = [part for part in FACTORS if part not in parts]
    if missing:
        raise LoraFileError(f"{name}: the LoHa layer {module} lacks {', '.join(missing)}.")
    w1a, w1b, w2a, w2b = (parts[part].astype(np.float32) for part in FACTORS)  # a bf16 product is exact in float32
    if (any(w.ndim != 2 for w in (w1a, w1b, w2a, w2b)) or w1a.shape[1] != w1b.shape[0]
            or w2a.shape[1] != w2b.shape[0] or w1a.shape[0] != w2a.shape[0] or w1b.shape[1] != w2b.shape[1]):
        raise LoraFileError(f"{name}: the layer {module} is not a LoHa of a Linear (shapes "
                            f"{[list(parts[part].shape) for part in FACTORS]}).")
    if not all(np.isfinite(w).all() for w in (w1a, w1b, w2a, w2b)):
        raise LoraFileError(f"{name}: the layer {module} has NaN or infinite weights.")
    return w1a, w1b, w2a, w2b


def loha_pairs(layers: dict[str, dict[str, np.ndarray]], name: str, progress: Callable[[int, int], None] | None = None
               ) -> tuple[dict[str, dict[str, np.ndarray]], str, float]:
    """({module: {"A", "B"}} of the LoHa `layers` ({module: {hada_w1_a, ..., alpha}}) as LoRA layers, scale folded
    into B; the sentence for the import's notes (the dim, the rank, the share kept when it is not exact); that share
    (by the Frobenius norm, over all layers). `progress(done, total)` hears of each layer written (a LoHa above dim
    16 takes a second or two a layer on two cores)."""
    seen = [parts for parts in layers.values()  # what _factors will take (it names the others when it meets them)
            if all(part in parts and parts[part].ndim == 2 for part in ("hada_w1_b", "hada_w2_b"))]
    dims = {int(parts["hada_w1_b"].shape[0]) for parts in seen}
    lossy = any(parts["hada_w1_b"].shape[0] * parts["hada_w2_b"].shape[0] > MAX_RANK for parts in seen)
    out, kept, whole = {}, 0.0, 0.0
    for done, (module, parts) in enumerate(layers.items()):
        if progress is not None:
            progress(done, len(layers))
        w1a, w1b, w2a, w2b = _factors(parts, module, name)
        alpha = parts.get("alpha")
        scale = float(alpha.reshape(-1)[0]) / w1b.shape[0] if alpha is not None else 1.0
        down, up = face_split(w1a, w1b, w2a, w2b)
        if down.shape[0] > MAX_RANK:
            from trainer.lora_resize import resize_pair

            down, up, part, total = resize_pair(down, up, scale, MAX_RANK)
            kept, whole, scale = kept + part, whole + total, 1.0
        elif lossy:  # the share kept counts this layer's change whole
            norm = float(((up.T @ up).astype(np.float64) * (down @ down.T)).sum()) * scale ** 2
            kept, whole = kept + norm, whole + norm
        out[module] = {"A": down, "B": up * np.float32(scale)}
    loha = f"a LyCORIS LoHa of dim {'/'.join(str(d) for d in sorted(dims))}"
    if kept >= whole:
        return out, f"{loha}, exactly", 1.0
    share = (kept / whole) ** 0.5 if whole > 0 else 1.0
    return out, f"{loha}, keeping {np.floor(share * 1000) / 10:g}% of its change", share
