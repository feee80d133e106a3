"""How a LyCORIS LoKr of a given factor splits the layers of Z-Image's transformer, without torch (the plan and
the web checks use it too).

A LoKr changes a Linear of `in` x `out` features by w1 ⊗ w2: each side is split into two factors (LyCORIS' and
peft's rule, `factorization`), the smaller ones make w1 (out_l x in_m), the larger ones w2 (out_k x in_n). This
studio trains w2 whole (LyCORIS' full matrix, ai-toolkit's full rank): the factor alone sets the size.
"""

from __future__ import annotations

import re

from trainer.lora_file import LOKR_FACTORS, LORA_TARGETS

FACTORS = [-1, 4, 8, 16, 32]  # the choices offered: -1 splits each side near its square root (the smallest file)
DEFAULT_FACTOR = 16


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """(m, n), m * n = dimension, as peft splits it (the engine trains peft's layers): (factor, dimension / factor)
    when the factor divides the dimension (even when that makes m the larger), else m <= n with m the largest
    divisor up to the factor that still shrinks m + n (-1: no limit, the pair nearest the square root)."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    limit = dimension if factor == -1 else factor
    m, n = 1, dimension
    while m < n:
        candidate = m + 1
        while dimension % candidate:
            candidate += 1
        if candidate + dimension // candidate > m + n or candidate > limit:
            break
        m, n = candidate, dimension // candidate
    return min(m, n), max(m, n)


def factor_shapes(in_features: int, out_features: int, factor: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(w1's shape, w2's shape) of the LoKr of one Linear."""
    in_m, in_n = factorization(in_features, factor)
    out_l, out_k = factorization(out_features, factor)
    return (out_l, in_m), (out_k, in_n)


def block_linears(dim: int, hidden: int, adaln_dim: int) -> dict[str, tuple[int, int]]:
    """{module name in a main block: (in, out)} of its Linears."""
    return {"attention.to_q": (dim, dim), "attention.to_k": (dim, dim), "attention.to_v": (dim, dim),
            "attention.to_out.0": (dim, dim), "feed_forward.w1": (dim, hidden), "feed_forward.w2": (hidden, dim),
            "feed_forward.w3": (dim, hidden), "adaLN_modulation.0": (adaln_dim, 4 * dim)}


def lokr_params(factor: int, targets: str = "all", dim: int = 3840, hidden: int = 10240, layers: int = 30) -> int:
    """Trainable parameters of a LoKr of `factor` on `targets` (a LORA_TARGETS key) of the transformer: the full
    model by default, the demo one with its own sizes."""
    chosen = re.compile(LORA_TARGETS[targets])
    total = 0
    for name, (in_f, out_f) in block_linears(dim, hidden, min(dim, 256)).items():
        if chosen.match(f"layers.0.{name}"):
            w1, w2 = factor_shapes(in_f, out_f, factor)
            total += w1[0] * w1[1] + w2[0] * w2[1]
    return total * layers


LAYER_PARTS = (*LOKR_FACTORS, "alpha")  # what a LoKr file holds for each layer


def header_layers(header: dict) -> dict[str, dict[str, list[int]]]:
    """{layer key prefix: {part: shape}} of a LoKr file's layers, from its header."""
    groups: dict[str, dict[str, list[int]]] = {}
    for key, info in header.items():
        prefix, _, part = key.rpartition(".")
        if part in LAYER_PARTS and isinstance(info, dict):
            groups.setdefault(prefix, {})[part] = [int(n) for n in info.get("shape") or []]
    return {prefix: parts for prefix, parts in groups.items() if set(parts) - {"alpha"}}


def matrix_shape(parts: dict[str, list[int]], which: str) -> tuple[int, int]:
    """(rows, columns) of a layer's w1 or w2 as one matrix, from its parts' shapes (a · b: a's rows, b's columns);
    (0, 0) when it is not a matrix."""
    whole, a, b = parts.get(f"lokr_{which}"), parts.get(f"lokr_{which}_a"), parts.get(f"lokr_{which}_b")
    if whole is not None:
        return tuple(whole) if len(whole) == 2 else (0, 0)
    return (a[0], b[1]) if a and b and len(a) == len(b) == 2 else (0, 0)


def file_factors(header: dict) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """{module name: (w1's shape, w2's shape)} of a LoKr file's header, a factor stored as a product a · b read as
    its product's shape; a module whose factors are not two matrices is left out."""
    from trainer.lora_file import module_name

    out = {}
    for prefix, parts in header_layers(header).items():
        w1, w2 = matrix_shape(parts, "w1"), matrix_shape(parts, "w2")
        if 0 not in w1 + w2:
            out[module_name(prefix)] = (w1, w2)
    return out


def matching_factor(found: dict[str, tuple[tuple[int, int], tuple[int, int]]]) -> int | None:
    """The factor of FACTORS that splits every layer as `found` (file_factors) does: the one a job training it
    further needs; None when none does (another trainer's split, or not a LoKr)."""
    for factor in FACTORS:
        if found and all(factor_shapes(w1[1] * w2[1], w1[0] * w2[0], factor) == (w1, w2) for w1, w2 in found.values()):
            return factor
    return None


def factor_of(header: dict) -> int | None:
    """The studio's LoKr factor a file's header was trained with (None: a LoRA, or a split of another trainer)."""
    return matching_factor(file_factors(header))


def check_start_lokr(header: dict, factor: int, targets: str, name: str) -> None:
    """LoraFileError unless a LoKr file's header can start a job training a LoKr of `factor` on `targets`: a LoKr
    of the main blocks, inside the targets, every layer split as this factor splits it."""
    from trainer.lora_file import LoraFileError, check_trained_modules

    found = file_factors(header)
    if not found:
        raise LoraFileError(f"{name} is not a LyCORIS LoKr: set Network to lora to start from it.")
    check_trained_modules(found, targets, name, "LoKr")
    for module, (w1, w2) in sorted(found.items()):
        size = (w1[1] * w2[1], w1[0] * w2[0])
        if factor_shapes(*size, factor) == (w1, w2):
            continue
        fits = matching_factor(found)
        hint = (f"set the LoKr factor to {fits}" if fits is not None else
                "it was trained with a split this studio does not offer (try it, or load it in ComfyUI, as it is)")
        raise LoraFileError(f"{name} splits {module} into {w1[0]}x{w1[1]} and {w2[0]}x{w2[1]}, not as LoKr factor "
                            f"{factor} does: {hint}.")


def step_cost(factor: int, targets: str = "all", dim: int = 3840, hidden: int = 10240) -> float:
    """A LoKr's multiply-adds per token next to its block's own Linears (q, k, v, out, w1, w2, w3): as applied
    here, X · w2ᵀ then w1 · (that), in_m·in_n·out_k + out_l·in_m·out_k per layer; the per-sample adaLN is left out."""
    chosen = re.compile(LORA_TARGETS[targets])
    base = extra = 0
    for name, (in_f, out_f) in block_linears(dim, hidden, min(dim, 256)).items():
        if name.startswith("adaLN"):
            continue
        base += in_f * out_f
        if chosen.match(f"layers.0.{name}"):
            (out_l, in_m), (out_k, in_n) = factor_shapes(in_f, out_f, factor)
            extra += in_m * in_n * out_k + out_l * in_m * out_k
    return extra / base
