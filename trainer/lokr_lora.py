"""A LyCORIS LoKr as a LoRA: for the model sites, online generators and tools that load LoRAs only, and to merge a
LoKr with LoRAs (trainer.lora_merge).

A LoKr layer's change is w1 ⊗ w2 (its scale folded into w1). With w1 = U1·S1·V1ᵀ and w2 = U2·S2·V2ᵀ, the Kronecker
product's SVD is (U1 ⊗ U2)·(S1 ⊗ S2)·(V1 ⊗ V2)ᵀ: its singular values are the products s1ᵢ·s2ⱼ, its directions the
Kronecker products of the factors'. So the best rank-k LoRA of a layer takes the k largest products (B's columns
√σ·(u1ᵢ ⊗ u2ⱼ), A's rows √σ·(v1ᵢ ⊗ v2ⱼ)) without ever forming the layer's full out x in matrix, and what it keeps is
exact. A LoKr's change is usually of high rank (a factor-16 LoKr of a 3840 x 3840 layer has up to 3,840 directions),
so a LoRA copy keeps less of it than Make smaller keeps of a LoRA: the menu says how much at each rank before one is
picked (lora_spectra). Torch-free (numpy), like Make smaller.

The inner products below let a merge of LoRAs and LoKrs say exactly how much of the merged change it keeps, though a
LoKr enters it through its largest directions only (trainer.lora_merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.atomic import atomic_write_bytes
from trainer.lokr_layout import header_layers, matrix_shape
from trainer.lokr_resize import factor_spectra, layer_factors, lokr_layers, svd_top
from trainer.lora_file import LoraFileError

RANKS = (128, 64, 32, 16)  # the ranks "Save as a LoRA" offers
DROPPED_METADATA = ("network", "lokr_factor", "lokr_w2_rank", "ss_network_args", "resized_from", "resize_kept")


@dataclass(frozen=True)
class AsLora:
    path: Path
    rank: int
    kept: float  # the share of the LoKr's change the LoRA keeps (Frobenius norm over all layers)
    size: int


def kron_lora(w1: np.ndarray, w2: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(A: rank x in, B: out x rank, kept squared norm, whole squared norm): the best rank-`rank` LoRA of the change
    w1 ⊗ w2 (float64 in, float32 out; zero-padded when the change has fewer directions)."""
    a, b = w1.shape
    c, d = w2.shape
    if not np.isfinite(w1).all():  # checked first: numpy's SVD of NaN only says it did not converge
        raise ValueError("its weights are not finite")
    u1, s1, v1t = np.linalg.svd(w1, full_matrices=False)
    u2, s2, v2t = svd_top(w2, min(rank, c, d))
    products = np.outer(s1, s2)
    order = np.argsort(products, axis=None)[::-1][:rank]
    i, j = np.unravel_index(order, products.shape)
    sigma = products[i, j]
    root = np.sqrt(sigma)
    up, down = np.zeros((a * c, rank), np.float32), np.zeros((rank, b * d), np.float32)
    n = len(sigma)
    up[:, :n] = np.einsum("ak,ck->ack", u1[:, i], u2[:, j]).reshape(a * c, n) * root
    down[:n] = np.einsum("kb,kd->kbd", v1t[i], v2t[j]).reshape(n, b * d) * root[:, None]
    return down, up, float((sigma ** 2).sum()), float((w1 ** 2).sum() * (w2 ** 2).sum())


def lora_spectra(name: str, tensors: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each LoKr layer's squared singular values (every product s1ᵢ²·s2ⱼ²), largest first: what a LoRA copy at any
    rank keeps (trainer.lora_resize.kept_at)."""
    return [np.sort(np.outer(np.linalg.svd(w1, compute_uv=False) ** 2, second), axis=None)[::-1]
            for w1, second in factor_spectra(name, tensors)]


def lora_options(header: dict, size: int) -> list[dict[str, int]]:
    """[{"rank", "bytes"}] of RANKS up to the largest rank a layer can have (its smaller side) for a LoKr file: about
    how large its LoRA copy is at each, from the header alone; [] for a file that is not a LoKr."""
    from trainer.lora_resize import header_itemsize

    groups = header_layers(header)
    if not groups:
        return []
    itemsize = header_itemsize(header)
    now = sides = full = 0
    for parts in groups.values():
        now += sum(int(np.prod(shape)) for shape in parts.values())
        (p, q), (r, s) = matrix_shape(parts, "w1"), matrix_shape(parts, "w2")
        sides += p * r + q * s  # out + in of the layer
        full = max(full, min(p * r, q * s))
    return [{"rank": rank, "bytes": max(0, size + (rank * sides - now) * itemsize)} for rank in RANKS if rank <= full]


def as_lora(source: Path, rank: int, target: Path) -> AsLora:
    """Writes `target`: the LoKr `source` as a LoRA of `rank` (each layer's largest directions), in the same key names
    (`<layer>.lora_A.weight`, `.lora_B.weight`, scale 1), dtype and metadata (a LoRA's now: `lokr_source` and
    `lokr_kept` added). LoraFileError with a sentence when it cannot."""
    from trainer.lora_resize import encode, read_tensors

    header, tensors = read_tensors(source)
    modules = lokr_layers(tensors)
    if not modules:
        raise LoraFileError(f"{source.name} is not a LyCORIS LoKr: it is a LoRA already.")
    if not 1 <= rank <= 1024:
        raise LoraFileError("A LoRA copy needs a rank from 1 to 1024.")
    out, kept, whole = {}, 0.0, 0.0
    for prefix, parts in modules.items():
        try:
            down, up, part, total = kron_lora(*layer_factors(parts, prefix, source.name), rank)
        except (np.linalg.LinAlgError, ValueError) as exc:  # NaN or infinite weights
            raise LoraFileError(f"{source.name}: the layer {prefix} cannot be written as a LoRA ({exc}).") from None
        out[f"{prefix}.lora_A.weight"], out[f"{prefix}.lora_B.weight"] = down, up
        kept, whole = kept + part, whole + total
    for key, value in tensors.items():  # anything else the file holds (a norm, a bias) stays as it was
        if key.rpartition(".")[0] not in modules:
            out[key] = value
    share = (kept / whole) ** 0.5 if whole > 0 else 1.0
    dtype = next(info["dtype"] for key, info in header.items() if key != "__metadata__")
    data = encode(out, dtype, lora_metadata(header, rank, lokr_source=source.name, lokr_kept=f"{share:.4f}"))
    atomic_write_bytes(target, data)
    return AsLora(target, rank, share, len(data))


def lora_metadata(header: dict, rank: int, **added: str) -> dict[str, str]:
    """A LyCORIS file's metadata for its LoRA copy: the LyCORIS network's entries dropped, the LoRA's rank (alpha
    folded) written where kohya's and ai-toolkit's readers look, and `added`."""
    meta = {key: value for key, value in (header.get("__metadata__") or {}).items() if key not in DROPPED_METADATA}
    return {**meta, "lora_rank": str(rank), "lora_alpha": str(rank), "ss_network_dim": str(rank),
            "ss_network_alpha": str(rank), "ss_network_module": "networks.lora", **added}


# Inner products of layer changes (Frobenius: <X, Y> = Σ X·Y), each without the full matrices: a LoRA's change is
# up · down, a LoKr's kron(w1, w2).

def lowrank_inner(up: np.ndarray, down: np.ndarray, up2: np.ndarray, down2: np.ndarray) -> float:
    """<up·down, up2·down2> = Σ (upᵀ·up2) ∘ (down·down2ᵀ)."""
    return float(((up.T @ up2) * (down @ down2.T)).sum())


def kron_lowrank_inner(w1: np.ndarray, w2: np.ndarray, up: np.ndarray, down: np.ndarray) -> float:
    """<w1 ⊗ w2, up·down>: (w1 ⊗ w2)·x is w1·X·w2ᵀ read row by row, X the b x d matrix x is, row by row; all of
    down's rows at once in two matrix products (a batch of small ones is 5x slower)."""
    (a, b), (c, d) = w1.shape, w2.shape
    rank = len(down)
    mixed = np.tensordot(w1, down.reshape(rank, b, d), axes=([1], [1]))  # (a, rank, d)
    changed = (mixed.reshape(a * rank, d) @ w2.T).reshape(a, rank, c)
    return float((changed * up.reshape(a, c, rank).transpose(0, 2, 1)).sum())


def kron_inner(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> float:
    """<w1 ⊗ w2, w1' ⊗ w2'> = <w1, w1'>·<w2, w2'> for factors of the same shapes; LoraFileError otherwise (two LoKrs
    of one layer split differently: the sum has no short form)."""
    (w1, w2), (x1, x2) = first, second
    if w1.shape != x1.shape or w2.shape != x2.shape:
        raise LoraFileError("Two LoKrs of different factors change the same layer: save one of them as a LoRA "
                            "first (its card's Save as a LoRA), then merge that.")
    return float((w1 * x1).sum() * (w2 * x2).sum())
