"""Training a LyCORIS LoKr instead of a LoRA (config network = lokr): peft's LoKr layers, w2 kept whole (the
factor alone sets the sizes: trainer.lokr_layout), with the Kronecker product never formed.

peft's LoKr layer builds the full change w1 ⊗ w2 (out x in) at every forward and multiplies by it: for the
3840-wide model that is a 59-150 MB matrix per layer and step, kept for the backward pass. Here the same change is
applied as w1 · X · w2ᵀ (the input seen as an in_m x in_n matrix, as trainer.engine.lokr applies a LoKr file), so
the only extra activation is one thin product per layer. Everything else (state dict, adapters on and off, EMA,
exact resume) stays peft's.
"""

from __future__ import annotations

import torch
from peft.tuners.lokr.layer import Linear as PeftLoKrLinear
from torch import nn

from trainer.engine.errors import TrainingError
from trainer.lora_file import LORA_TARGETS

FULL_RANK = 1_000_000  # a rank above every layer's size: peft keeps w2 whole, as LyCORIS' full matrix mode


class KronLinear(PeftLoKrLinear):
    """peft's LoKr Linear with its delta applied through the factors: same parameters, same result (to rounding)."""

    def _get_delta_activations(self, adapter_name: str, input: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        w1, w2 = self.lokr_w1[adapter_name], self.lokr_w2[adapter_name]
        # under autocast the products take the input as it comes; a float32 copy of it would only be cast back
        x = input if torch.is_autocast_enabled(input.device.type) else self._cast_input_dtype(input, w1.dtype)
        lead = x.shape[:-1]
        z = x.reshape(*lead, w1.shape[1], w2.shape[1]) @ w2.T  # (..., in_m, out_k)
        return ((w1 * self.scaling[adapter_name]) @ z).reshape(*lead, -1)  # (..., out_l, out_k) row by row


def add_lokr(model: nn.Module, factor: int, seed: int, targets: str = "all") -> list[nn.Parameter]:
    """A trainable LoKr of `factor` on the `targets` layers (a LORA_TARGETS key): w1 starts at zero (no change
    at step 0), w2 at peft's Kaiming init; the trainable tensors in float32, as the LoRA's."""
    from peft import LoKrConfig

    config = LoKrConfig(r=FULL_RANK, alpha=FULL_RANK, decompose_factor=factor, init_weights=True,
                        target_modules=LORA_TARGETS[targets])
    with torch.random.fork_rng(devices=[]):  # the init draws from the global RNG: seeded, a job is reproducible
        torch.manual_seed(seed)
        model.add_adapter(config)
    for module in model.modules():
        if type(module) is PeftLoKrLinear:
            module.__class__ = KronLinear  # adds no state: only how the delta is applied
    params = []
    for name, param in model.named_parameters():
        if ".lokr_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
            params.append(param)
    if not params:
        raise TrainingError(f"No layer of the transformer matches the LoRA layers '{targets}'.")
    return params


def lokr_layers(model: nn.Module) -> dict[str, KronLinear]:
    """{module name: its LoKr layer}, as peft's state dict and a LoKr file name them."""
    return {name: module for name, module in model.named_modules() if isinstance(module, KronLinear)}


def lokr_state_dict(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A LyCORIS LoKr file's tensors as ComfyUI reads them: `diffusion_model.<module>.lokr_w1` and `.lokr_w2`, the
    scale folded into w1 and no alpha (with both factors whole, ComfyUI and LyCORIS apply w1 ⊗ w2 at scale 1)."""
    from trainer.engine.model import COMFY_PREFIX

    out = {}
    for name, module in lokr_layers(model).items():
        w1 = module.lokr_w1["default"].detach().to("cpu", torch.float32, copy=True) * module.scaling["default"]
        w2 = module.lokr_w2["default"].detach().to("cpu", torch.float32, copy=True)
        out[f"{COMFY_PREFIX}{name}.lokr_w1"] = w1.to(dtype).contiguous()
        out[f"{COMFY_PREFIX}{name}.lokr_w2"] = w2.to(dtype).contiguous()
    return out


@torch.no_grad()
def start_from_lokr(model: nn.Module, lokr, factor: int) -> int:
    """Set the trainable LoKr (added by add_lokr) to a LoKr file's change (a trainer.engine.lokr.KronDelta), so
    training goes on from it; its scale is folded into w1, a w2 stored as a product is multiplied out. Layers the
    file leaves out start from zero. Returns how many layers were set."""
    layers = lokr_layers(model)
    for name, (w1, w2, scale) in lokr.modules.items():
        layer = layers.get(name)
        if layer is None:
            raise TrainingError(f"{lokr.label} trains {name}, which this job's LoRA layers leave out: set LoRA "
                                "layers to all.")
        mine1, mine2 = layer.lokr_w1["default"], layer.lokr_w2["default"]
        whole = w2[0] if len(w2) == 1 else w2[0] @ w2[1]
        if tuple(w1.shape) != tuple(mine1.shape) or tuple(whole.shape) != tuple(mine2.shape):
            raise TrainingError(f"{lokr.label} splits {name} into {tuple(w1.shape)} and {tuple(whole.shape)}, this "
                                f"job's LoKr factor {factor} into {tuple(mine1.shape)} and {tuple(mine2.shape)}: "
                                "set the LoKr factor the file was trained with.")
        mine1.copy_((w1 * scale / layer.scaling["default"]).to(mine1.dtype))
        mine2.copy_(whole.to(mine2.dtype))
    return len(lokr.modules)
