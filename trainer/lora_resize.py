"""Make a LoRA file smaller: the same layers at a lower rank, each layer's change kept as closely as that rank can
(its largest singular values), like kohya's resize script (a LyCORIS LoKr's larger factors: trainer.lokr_resize).
A rank-32 LoRA at rank 8 is a quarter of the file, quicker to download and share; `kept` says how much of the
change stays (by the Frobenius norm, over all layers).

Each layer's change is s·B·A (B: out x r, A: r x in, s = alpha / r when the file has alpha keys, else 1, as this
studio and ComfyUI read it). With B = Ub·Sb·Vbᵀ and A = Va·Sa·Uaᵀ (from the r x r Gram matrices BᵀB and AAᵀ) it
is Ub·(s·Sb·Vbᵀ·Va·Sa)·Uaᵀ, so the SVD of that r x r core gives the best rank-k change without ever forming the full
out x in matrix. Torch-free (numpy): the web process does it in about a second. The new file keeps the original's
key names, dtype and metadata (its rank updated, `resized_from` and `resize_kept` added); alpha is folded into B as
in every file this studio writes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.atomic import atomic_write_bytes
from trainer.lora_file import LoraFileError, read_header

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}  # BF16 is read and written as its bits


@dataclass(frozen=True)
class Resized:
    path: Path
    rank: int  # the new rank
    from_rank: int
    kept: float  # the share of the LoRA's change the new file keeps (Frobenius norm over all layers)
    size: int


def read_tensors(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, {key: float32 array}) of a .safetensors file in F32, F16 or BF16."""
    header = read_header(path)
    tensors = {}
    with open(path, "rb") as handle:
        start = 8 + struct.unpack("<Q", handle.read(8))[0]
        for key, info in header.items():
            if key != "__metadata__":
                try:
                    tensors[key] = _tensor(handle, start, key, info, path.name)
                except LoraFileError:
                    raise
                except (KeyError, TypeError, ValueError, OverflowError):  # a header entry of another shape
                    raise LoraFileError(f"{path.name} is not a LoRA file this studio can read ({key}).") from None
    return header, tensors


def _tensor(handle, start: int, key: str, info: dict, name: str) -> np.ndarray:
    if info.get("dtype") not in DTYPES:
        raise LoraFileError(f"{name}: {key} is {info.get('dtype')}; this studio reads F32, F16 and BF16 LoRAs.")
    begin, end = info["data_offsets"]
    handle.seek(start + begin)
    data = handle.read(end - begin)
    want = int(np.prod(info["shape"])) * np.dtype(DTYPES[info["dtype"]]).itemsize
    if len(data) != want:
        raise LoraFileError(f"{name} is cut short or damaged ({key} has {len(data)} of its {want} bytes).")
    raw = np.frombuffer(data, dtype=DTYPES[info["dtype"]])
    values = (raw.astype(np.uint32) << 16).view(np.float32) if info["dtype"] == "BF16" else raw
    return values.astype(np.float32).reshape(info["shape"])


def lora_layers(tensors: dict[str, np.ndarray], name: str) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{module key prefix: (A, B, scale)} of a LoRA file's layers, scale = alpha / rank where the file has alpha
    (else 1): the change is scale·B·A. LoraFileError when a lora_A has no lora_B of its rank beside it."""
    out = {}
    for key, down in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        prefix = key[: -len(".lora_A.weight")]
        up, alpha = tensors.get(f"{prefix}.lora_B.weight"), tensors.get(f"{prefix}.alpha")
        if up is None or down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            raise LoraFileError(f"{name}: the layer {prefix} has no lora_B of its rank beside its lora_A.")
        out[prefix] = (down, up, float(alpha.reshape(-1)[0]) / down.shape[0] if alpha is not None else 1.0)
    return out


def resize_pair(down: np.ndarray, up: np.ndarray, scale: float, rank: int) -> tuple[np.ndarray, np.ndarray, float,
                                                                                     float]:
    """(A', B', kept squared norm, whole squared norm) of the change scale·up·down at `rank`.

    From the two r x r Gram matrices rather than QRs of the thin factors (10-20x quicker: a QR forms its Q column by
    column): upᵀ·up = Vb·Λb·Vbᵀ and down·downᵀ = Va·Λa·Vaᵀ give up = Ub·Sb·Vbᵀ and down = Va·Sa·Uaᵀ (S = Λ^½, U
    orthonormal), so the change is Ub·(scale·Sb·Vbᵀ·Va·Sa)·Uaᵀ and the SVD of that r x r core is the change's.
    Directions a factor has below 1e-7 of its largest (float64 Gram: below that they carry nothing a LoRA file can
    hold) are left out; a rank-deficient factor (a LoRA stacked from copies, a change of lower rank) is read exactly."""
    up64, down64 = up.astype(np.float64), down.astype(np.float64)
    width = min(rank, down.shape[0])  # every layer of the new file at the rank asked for, zero-padded if need be
    new_down, new_up = np.zeros((width, down.shape[1]), np.float32), np.zeros((up.shape[0], width), np.float32)
    core = _core(down64, up64, scale)
    if core is None:  # a layer that changes nothing (a LoRA at step 0)
        return new_down, new_up, 0.0, 0.0
    (vb, sb, va, sa), (u, s, vt) = core
    k = min(width, len(s))
    root = np.sqrt(s[:k])
    # the small r x r products first: a factor of r columns (a merge's or a LoHa's r of 1,024) is multiplied once
    new_up[:, :k] = up64 @ ((vb / sb[None, :]) @ (u[:, :k] * root))  # Ub · u, with Ub = up · Vb / Sb
    new_down[:k] = ((root[:, None] * vt[:k]) @ (va / sa[None, :]).T) @ down64  # vᵀ · Uaᵀ, with Uaᵀ = Vaᵀ · down / Sa
    return new_down, new_up, float((s[:k] ** 2).sum()), float((s ** 2).sum())


def _core(down64: np.ndarray, up64: np.ndarray, scale: float):
    """((Vb, Sb, Va, Sa), the SVD of the r x r core) of a layer's change (resize_pair); None when it changes
    nothing."""
    vb, sb = _gram_basis(up64.T @ up64)
    va, sa = _gram_basis(down64 @ down64.T)
    if not len(sb) or not len(sa):
        return None
    return (vb, sb, va, sa), np.linalg.svd(scale * (sb[:, None] * (vb.T @ va)) * sa[None, :])


def spectra(path: Path) -> list[np.ndarray]:
    """Each layer's squared singular values, largest first (a LoKr's: trainer.lokr_resize.lokr_spectra): what a
    smaller copy at any rank keeps, without writing one (kept_at)."""
    _header, tensors = read_tensors(path)
    layers = lora_layers(tensors, path.name)
    if not layers and any(".lokr_" in key for key in tensors):
        from trainer.lokr_resize import lokr_spectra

        return lokr_spectra(path.name, tensors)
    out = []
    for down, up, scale in layers.values():
        try:
            core = _core(down.astype(np.float64), up.astype(np.float64), scale)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise LoraFileError(f"{path.name}: a layer's change cannot be read ({exc}).") from None
        out.append(core[1][1] ** 2 if core is not None else np.zeros(0))
    return out


def kept_at(layers: list[np.ndarray], rank: int) -> float:
    """The share of the change (by the Frobenius norm, over all layers) a copy at `rank` keeps."""
    whole = sum(float(values.sum()) for values in layers)
    return (sum(float(values[:rank].sum()) for values in layers) / whole) ** 0.5 if whole > 0 else 1.0


def _gram_basis(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, S): the eigenvectors of a Gram matrix whose square-rooted eigenvalues S are above 1e-7 of the largest."""
    if not np.isfinite(gram).all():
        raise ValueError("its weights are not finite")
    values, vectors = np.linalg.eigh(gram)
    roots = np.sqrt(np.clip(values, 0.0, None))
    keep = roots > max(roots.max(initial=0.0), 1e-30) * 1e-7
    return vectors[:, keep], roots[keep]


def resize(source: Path, rank: int, target: Path) -> Resized:
    """Writes `target`: `source` at `rank` (lower than its own). LoraFileError with a sentence when it cannot."""
    header, tensors = read_tensors(source)
    layers = lora_layers(tensors, source.name)
    if not layers and any(".lokr_" in key for key in tensors):  # a LyCORIS LoKr: its larger factors get the rank
        from trainer.lokr_resize import resize_lokr

        return resize_lokr(source, header, tensors, rank, target)
    if not layers:
        raise LoraFileError(f"{source.name} holds no lora_A/lora_B pairs to make smaller.")
    from_rank = max(down.shape[0] for down, _up, _scale in layers.values())
    if not 1 <= rank < from_rank:
        raise LoraFileError(f"{source.name} has rank {from_rank}: a smaller file needs a rank from 1 to "
                            f"{from_rank - 1}.")
    out, kept, whole = {}, 0.0, 0.0
    for prefix, (down, up, scale) in layers.items():
        try:
            down, up, part, total = resize_pair(down, up, scale, rank)
        except (np.linalg.LinAlgError, ValueError) as exc:  # NaN or infinite weights, a shape that does not fit
            raise LoraFileError(f"{source.name}: the layer {prefix} cannot be made smaller ({exc}).") from None
        out[f"{prefix}.lora_A.weight"], out[f"{prefix}.lora_B.weight"] = down, up
        kept, whole = kept + part, whole + total
    for key, value in tensors.items():  # anything else the file holds (a norm, a bias) stays as it was
        if key not in out and not key.endswith(".alpha"):
            out[key] = value
    share = (kept / whole) ** 0.5 if whole > 0 else 1.0
    dtype = next(info["dtype"] for key, info in header.items() if key != "__metadata__")
    meta = dict(header.get("__metadata__") or {})
    meta.update({"lora_rank": str(rank), "lora_alpha": str(rank), "ss_network_dim": str(rank),
                 "ss_network_alpha": str(rank), "resized_from": source.name, "resize_kept": f"{share:.4f}"})
    data = encode(out, dtype, meta)
    atomic_write_bytes(target, data)
    return Resized(target, rank, from_rank, share, len(data))


def encode(tensors: dict[str, np.ndarray], dtype: str, metadata: dict[str, str]) -> bytes:
    """A .safetensors file of `tensors` (float32) stored as `dtype`."""
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for key in sorted(tensors):
        blob = _stored(tensors[key], dtype).tobytes()
        header[key] = {"dtype": dtype, "shape": list(tensors[key].shape), "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts on an 8-byte boundary
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _stored(values: np.ndarray, dtype: str) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype != "BF16":
        return values.astype(DTYPES[dtype])
    bits = values.view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest, ties to even


def header_itemsize(header: dict) -> int:
    """Bytes per number of a file's tensors, from its header (the first tensor's dtype; 4 when none is read)."""
    return next((np.dtype(DTYPES[info["dtype"]]).itemsize for key, info in header.items()
                 if key != "__metadata__" and isinstance(info, dict) and info.get("dtype") in DTYPES), 4)


RANKS = [64, 32, 16, 8, 4, 2, 1]  # the ranks "Make smaller" offers, the three below a file's own


def smaller_options(header: dict, size: int) -> list[dict[str, int]]:
    """[{"rank", "bytes"}]: the three ranks of RANKS below the file's (a LoRA's largest rank, a LoKr's largest w2) and
    about how large the file would be at each, from its header alone (nothing loaded)."""
    from trainer.lokr_resize import lokr_numel

    itemsize = header_itemsize(header)
    shapes = {key: info.get("shape") or [] for key, info in header.items() if isinstance(info, dict)}
    pairs = [(shape, shapes[key[: -len("A.weight")] + "B.weight"]) for key, shape in shapes.items()
             if key.endswith(".lora_A.weight") and len(shape) == 2
             and len(shapes.get(key[: -len("A.weight")] + "B.weight", [])) == 2]
    options = []
    for rank in RANKS:
        if pairs:
            if rank >= max(a[0] for a, _b in pairs):
                continue
            now = sum(a[0] * a[1] + b[0] * b[1] for a, b in pairs)
            later = sum(min(rank, a[0]) * (a[1] + b[0]) for a, b in pairs)
        else:
            numbers = lokr_numel(header, rank)
            if numbers is None:
                continue
            now, later = numbers
        options.append({"rank": rank, "bytes": max(0, size - (now - later) * itemsize)})
    return options[:3]
