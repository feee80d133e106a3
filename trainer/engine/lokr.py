"""LyCORIS LoKr files, tried like LoRAs (Try the LoRA): each Linear's change is scale · (w1 ⊗ w2), the Kronecker
product of two small matrices (either one may be stored as a product of two, w1_a · w1_b), scale = alpha / the
inner dimension of the decomposed one, as ComfyUI and LyCORIS read it. Applied by a forward hook without ever
forming the full matrix: for x of in = q·s features seen as a q x s matrix X, (w1 ⊗ w2) x is w1 · X · w2ᵀ read row by
row, for w1 of p x q and w2 of r x s (out = p·r).
"""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.engine.errors import TrainingError
from trainer.lokr_layout import LAYER_PARTS
from trainer.lora_file import PREFIXES


def _factors(parts: dict, which: str, name: str, label: str) -> tuple[torch.Tensor, ...]:
    """w1 or w2 of a module: (whole,) or (a, b) when it is stored as the product a · b."""
    whole = parts.get(f"lokr_{which}")
    if whole is not None:
        return (whole.float(),)
    a, b = parts.get(f"lokr_{which}_a"), parts.get(f"lokr_{which}_b")
    if a is None or b is None or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise TrainingError(f"{label} has no usable lokr_{which} for {name}: it is not a LoKr of a Linear layer.")
    return a.float(), b.float()


def _product(factors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return factors[0] if len(factors) == 1 else factors[0] @ factors[1]


class KronDelta:
    """A LoKr file held as (w1, w2's factors, scale) per module name of the diffusers transformer: w2 kept as the
    product it was stored as, so a hook multiplies by its thin factors (LyCORIS keeps w1 small and w2 thin); the
    same interface as trainer.engine.model.LoraDelta (modules, label, shape, hook, delta)."""

    def __init__(self, modules: dict[str, tuple[torch.Tensor, tuple[torch.Tensor, ...], float]], label: str):
        self.modules = modules
        self.label = label

    @classmethod
    def load(cls, path: Path, label: str) -> KronDelta:
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise TrainingError(f"{label} cannot be read ({exc}).") from exc
        grouped: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            module, _, part = key.rpartition(".")
            if part not in LAYER_PARTS:
                continue
            for prefix in PREFIXES:
                module = module.removeprefix(prefix)
            grouped.setdefault(module, {})[part] = value
        modules = {}
        for name, parts in grouped.items():
            w1, w2 = _factors(parts, "w1", name, label), _factors(parts, "w2", name, label)
            # as ComfyUI reads it: alpha over the inner dimension of the decomposed factor (w2's, else w1's)
            dim = w2[1].shape[0] if len(w2) == 2 else w1[1].shape[0] if len(w1) == 2 else None
            alpha = parts.get("alpha")
            scale = float(alpha) / dim if alpha is not None and dim else 1.0
            modules[name] = (_product(w1), w2, scale)
        if not modules:
            raise TrainingError(f"{label} holds no LoKr weights.")
        return cls(modules, label)

    def shape(self, name: str) -> tuple[int, int]:
        w1, w2, _scale = self.modules[name]
        return w1.shape[1] * w2[-1].shape[1], w1.shape[0] * w2[0].shape[0]

    def delta(self, name: str) -> torch.Tensor:
        w1, w2, scale = self.modules[name]
        return torch.kron(w1, _product(w2)) * scale

    def hook(self, name: str, device: torch.device, weight: float):
        w1, w2, scale = self.modules[name]
        a = (w1 * (scale * weight)).to(device)  # the strength folded into w1
        thin = [factor.T.contiguous().to(device) for factor in reversed(w2)]  # X · w2ᵀ = X · w2_bᵀ · w2_aᵀ
        q, s = a.shape[1], thin[0].shape[0]

        def hook(_module, args, output):
            x = args[0].float()
            z = x.reshape(*x.shape[:-1], q, s)
            for factor in thin:
                z = z @ factor
            return output + (a @ z).reshape(*x.shape[:-1], -1).to(output.dtype)  # (..., p, r) read row by row

        return hook
