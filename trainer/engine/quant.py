"""8-bit storage for the frozen base transformer (float8 e4m3 or int8, per-output-row scales).

A small nn.Linear subclass instead of a quantization library: peft still sees a Linear, the weights
take one byte each, and the backward pass re-expands them only for the input gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

FP8_MAX = 448.0  # largest finite float8_e4m3fn value


class _QuantizedMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, qweight, scale, bias):
        weight = qweight.to(x.dtype) * scale.to(x.dtype)
        ctx.save_for_backward(qweight, scale)  # keep the 8-bit copy, not the expanded one
        return F.linear(x, weight, bias.to(x.dtype) if bias is not None else None)

    @staticmethod
    def backward(ctx, grad_out):
        qweight, scale = ctx.saved_tensors
        weight = qweight.to(grad_out.dtype) * scale.to(grad_out.dtype)
        return grad_out @ weight, None, None, None


class QuantizedLinear(nn.Linear):
    """A frozen Linear whose weight is stored in 8 bits with one scale per output row."""

    def __init__(self, linear: nn.Linear, mode: str):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.mode = mode
        self.compute_dtype = linear.weight.dtype
        weight = linear.weight.detach().float()
        amax = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        if mode == "float8":
            scale = amax / FP8_MAX
            q = (weight / scale).to(torch.float8_e4m3fn)
        elif mode == "int8":
            scale = amax / 127.0
            q = (weight / scale).round().clamp(-127, 127).to(torch.int8)
        else:
            raise ValueError(f"unknown quantization {mode!r}")
        self.weight = nn.Parameter(q, requires_grad=False)
        self.register_buffer("weight_scale", scale.to(self.compute_dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        elif x.dtype != self.compute_dtype and x.dtype.is_floating_point:
            x = x.to(self.compute_dtype)
        with torch.autocast(x.device.type, enabled=False):
            return _QuantizedMatmul.apply(x, self.weight, self.weight_scale, self.bias)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight.to(self.compute_dtype) * self.weight_scale


def quantize_linears(model: nn.Module, mode: str,
                     factory: Callable[[str, nn.Linear], nn.Module] | None = None) -> int:
    """Replace every frozen Linear of `model` (LoRA layers excluded) by a QuantizedLinear, or by what
    `factory(name, linear)` builds (fast_linear's float8 layers).

    Works from module names, holding no reference to the replaced layers, so each bf16 weight is freed
    as soon as its 8-bit copy exists: the peak stays near the bf16 model's size."""
    make = factory or (lambda _name, linear: QuantizedLinear(linear, mode))
    targets = [
        name for name, module in model.named_modules()
        if type(module) is nn.Linear and not module.weight.requires_grad and ".lora_" not in f".{name}"
    ]
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, make(name, getattr(parent, child_name)))
    return len(targets)
