"""Make a LyCORIS LoKr file smaller: each layer's larger factor w2 stored as a product of rank k (its largest singular
values, as trainer.lora_resize does a LoRA's change), w1 as it is. The change is scale·(w1 ⊗ w2) and the norm of a
Kronecker product is the product of the norms, so a layer keeps exactly ‖w2 at rank k‖ / ‖w2‖ of its change;
`kept` says it over all layers. Torch-free (numpy), like the LoRA's.

The new file writes w2 as `lokr_w2_a` (r x k) and `lokr_w2_b` (k x s) with alpha = k, so ComfyUI and LyCORIS, which
scale by alpha over w2_b's rows, use scale 1; the file's own scale is folded into w1. A layer whose w2 has no more
than k directions keeps it whole. Key names, dtype and metadata stay; `lokr_w2_rank`, `resized_from` and
`resize_kept` are added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.atomic import atomic_write_bytes
from trainer.lokr_layout import LAYER_PARTS, header_layers, matrix_shape
from trainer.lora_file import LoraFileError


def lokr_layers(tensors: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{module key prefix: {part: array}} of every LoKr layer (a layer with lokr_t2, a conv's, is refused)."""
    found: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        prefix, _, part = key.rpartition(".")
        if part == "lokr_t2":
            raise LoraFileError(f"{prefix} is a LoKr of a convolution (lokr_t2): this studio reads LoKrs of linear "
                                "layers only.")
        if part in LAYER_PARTS:
            found.setdefault(prefix, {})[part] = value
    return {prefix: parts for prefix, parts in found.items() if set(parts) - {"alpha"}}


def _factor(parts: dict[str, np.ndarray], which: str, prefix: str, name: str) -> tuple[np.ndarray, int | None]:
    """(the factor as one matrix, its inner dimension when the file stores it as a product)."""
    whole = parts.get(f"lokr_{which}")
    if whole is not None:
        return whole.astype(np.float64), None
    a, b = parts.get(f"lokr_{which}_a"), parts.get(f"lokr_{which}_b")
    if a is None or b is None or a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise LoraFileError(f"{name}: the layer {prefix} has no usable lokr_{which}.")
    return a.astype(np.float64) @ b.astype(np.float64), b.shape[0]


def layer_factors(parts: dict[str, np.ndarray], prefix: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(w1 with the layer's scale folded in, w2), each as one matrix: the layer's change is w1 ⊗ w2. The scale is
    alpha over the decomposed factor's inner dimension (w2's, else w1's), as ComfyUI reads it; 1 without either."""
    w1, w1_dim = _factor(parts, "w1", prefix, name)
    w2, w2_dim = _factor(parts, "w2", prefix, name)
    dim, alpha = w2_dim or w1_dim, parts.get("alpha")
    scale = float(alpha.reshape(-1)[0]) / dim if alpha is not None and dim else 1.0
    return w1 * scale, w2


def w2_rank(parts_shapes: dict[str, list[int]]) -> int:
    """The most directions a layer's w2 can have, from its parts' shapes ({part: shape}): a product's inner
    dimension, a whole matrix's smaller side."""
    if "lokr_w2_b" in parts_shapes:
        return int((parts_shapes["lokr_w2_b"] or [0])[0])
    shape = parts_shapes.get("lokr_w2") or [0, 0]
    return int(min(shape)) if len(shape) == 2 else 0


def smaller_gram(w2: np.ndarray) -> np.ndarray:
    """The smaller of w2ᵀw2 and w2w2ᵀ: its eigenvalues are w2's squared singular values."""
    return w2.T @ w2 if w2.shape[0] >= w2.shape[1] else w2 @ w2.T


def svd_top(w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u: rows x k, s: k, vt: k x columns): the k largest singular values of w (float64) and their directions. From
    the eigenvectors of the smaller Gram matrix (wᵀw or wwᵀ) rather than a full SVD: 3-5x quicker at a LoKr's w2
    shapes (a 1280 x 480 w2: 23 ms against 101), exact to float64 rounding for the directions that matter."""
    values, vectors = np.linalg.eigh(smaller_gram(w))
    if not np.isfinite(values).all():
        raise ValueError("its weights are not finite")
    singular = np.sqrt(np.clip(values[::-1][:k], 0.0, None))
    vectors = vectors[:, ::-1][:, :k]
    safe = np.where(singular > 0, singular, 1.0)
    if w.shape[0] >= w.shape[1]:  # vectors are the right singular vectors: u = w · v / σ
        return (w @ vectors) / safe, singular, vectors.T
    return vectors, singular, (vectors.T @ w) / safe[:, None]  # the left ones: vᵀ = uᵀ · w / σ


def _top(w2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(a, b, kept squared norm): w2's best rank-k approximation a · b (a: rows x k, b: k x columns), each side
    scaled by the singular values' roots."""
    u, singular, vt = svd_top(w2, k)
    root = np.sqrt(singular)
    return (u * root).astype(np.float32), (root[:, None] * vt).astype(np.float32), float((singular ** 2).sum())


def resize_lokr(source: Path, header: dict, tensors: dict[str, np.ndarray], rank: int, target: Path):
    """Writes `target`: the LoKr `source` (its header and float32 tensors, read by trainer.lora_resize) with every
    w2 at `rank` at most; returns trainer.lora_resize.Resized."""
    from trainer.lora_resize import Resized, encode

    modules = lokr_layers(tensors)
    if not modules:
        raise LoraFileError(f"{source.name} holds no LoKr layers to make smaller.")
    from_rank = max(w2_rank({part: list(value.shape) for part, value in parts.items()})
                    for parts in modules.values())
    if not 1 <= rank < from_rank:
        raise LoraFileError(f"{source.name}'s larger LoKr factors have rank {from_rank} at most: a smaller file "
                            f"needs a rank from 1 to {from_rank - 1}.")
    out, kept, whole = {}, 0.0, 0.0
    for prefix, parts in modules.items():
        w1, w2 = layer_factors(parts, prefix, source.name)
        norm1 = float((w1 ** 2).sum())
        out[f"{prefix}.lokr_w1"] = w1.astype(np.float32)
        whole += norm1 * float((w2 ** 2).sum())
        if rank >= min(w2.shape):  # no more directions than the rank: kept whole
            kept += norm1 * float((w2 ** 2).sum())
            out[f"{prefix}.lokr_w2"] = w2.astype(np.float32)
            continue
        try:
            w2_a, w2_b, part = _top(w2, rank)
        except (np.linalg.LinAlgError, ValueError) as exc:  # NaN or infinite weights
            raise LoraFileError(f"{source.name}: the layer {prefix} cannot be made smaller ({exc}).") from None
        kept += norm1 * part
        out[f"{prefix}.lokr_w2_a"], out[f"{prefix}.lokr_w2_b"] = w2_a, w2_b
        out[f"{prefix}.alpha"] = np.array(float(rank), np.float32)
    for key, value in tensors.items():  # anything else the file holds stays as it was
        if key.rpartition(".")[0] not in modules:
            out[key] = value
    share = (kept / whole) ** 0.5 if whole > 0 else 1.0
    dtype = next(info["dtype"] for key, info in header.items() if key != "__metadata__")
    meta = dict(header.get("__metadata__") or {})
    meta.update({"lokr_w2_rank": str(rank), "resized_from": source.name, "resize_kept": f"{share:.4f}"})
    data = encode(out, dtype, meta)
    atomic_write_bytes(target, data)
    return Resized(target, rank, from_rank, share, len(data))


def lokr_numel(header: dict, rank: int) -> tuple[int, int] | None:
    """(numbers the LoKr layers hold now, numbers they hold at `rank`) from a file's header; None without LoKr layers
    or when no w2 has more than `rank` directions."""
    groups = header_layers(header)
    if not groups or max(w2_rank(parts) for parts in groups.values()) <= rank:
        return None
    now = later = 0
    for parts in groups.values():
        now += sum(int(np.prod(shape)) for shape in parts.values())
        (p, q), (r, s) = matrix_shape(parts, "w1"), matrix_shape(parts, "w2")
        later += p * q + (rank * (r + s) + 1 if rank < min(r, s) else r * s)
    return now, later


def lokr_spectra(name: str, tensors: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each layer's squared singular values of scale·(w1 ⊗ w2) through w2's (‖w1‖² times w2's), largest first:
    what resize_lokr keeps at any rank (trainer.lora_resize.kept_at)."""
    return [float((w1 ** 2).sum()) * second for w1, second in factor_spectra(name, tensors)]


def factor_spectra(name: str, tensors: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(w1 with its scale folded in, w2's squared singular values largest first)] of every LoKr layer, from w2's
    smaller Gram matrix; LoraFileError when a layer's weights are not finite."""
    out = []
    for prefix, parts in lokr_layers(tensors).items():
        w1, w2 = layer_factors(parts, prefix, name)
        gram = smaller_gram(w2)
        if not (np.isfinite(gram).all() and np.isfinite(w1).all()):
            raise LoraFileError(f"{name}: the layer {prefix}'s weights are not finite.")
        out.append((w1, np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)))
    return out
