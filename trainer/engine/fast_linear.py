"""Frozen Linear layers whose matrix products run in float8 on GPUs that have float8 tensor cores
(Hopper, Ada: compute capability 8.9 and up), through torch._scaled_mm with row-wise scales.

Storing the base in float8 (quant.QuantizedLinear) halves its memory but makes each step slower,
because every weight is expanded back to bf16 before its matmul. Here the weight stays in float8 and
the activation is quantised per token on the fly, so the frozen matmuls run at float8 speed:

    forward   y  = (q(x) * sx) @ (Q * sw)^T      Q: float8 weight [out, in], sw: scale per output row
    backward  dx = q(dy * sw) * sg  @  Q         the row scales of W fold into dy, so one float8
                                                  copy of the weight serves both directions

The LoRA branch (peft, around this layer) stays in bf16/float32 and is untouched. Neither direction
saves the input activation: a frozen weight needs no weight gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
MIN_ROWS = 16  # below this (the adaLN's one row per sample) the float8 kernel buys nothing


def float8_matmul_support(device: torch.device) -> str | None:
    """None when float8 matmuls run on `device`; otherwise the reason, as one sentence."""
    if device.type != "cuda":
        return "float8 matrix products need a CUDA GPU"
    if not hasattr(torch, "_scaled_mm"):
        return f"this PyTorch ({torch.__version__}) has no torch._scaled_mm"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return (f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor}) has no float8 tensor "
                "cores; Hopper or Ada (8.9+) is needed")
    try:  # the row-wise scaled kernel is what we use; some builds only have the per-tensor one
        a = torch.ones(32, 64, device=device).to(FP8)
        b = torch.ones(48, 64, device=device).to(FP8)
        torch._scaled_mm(a, b.t(), scale_a=torch.ones(32, 1, device=device), scale_b=torch.ones(1, 48, device=device),
                         out_dtype=torch.bfloat16)
    except (RuntimeError, TypeError) as exc:
        return f"row-wise scaled float8 matmul is not available here ({str(exc).splitlines()[0]})"
    return None


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (float8 [M, K], float32 scale [M, 1]) with each row's largest magnitude mapped to 448.
    Three passes over x and one float32 copy (the abs, float, divide, clamp chain took six passes and three
    copies, at every frozen product of every step): the row maximum is exact in x's own dtype, the
    division promotes to float32 as it reads, and |x| / (max / 448) cannot round past 448, so no clamp."""
    amax = torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True)
    scale = amax.float().clamp(min=1e-12) / FP8_MAX
    return (x / scale).to(FP8), scale


class _Float8Matmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, qweight, wscale):
        # x [M, K] bf16; qweight [N, K] float8 (row-major, so .t() is the column-major [K, N] the kernel wants)
        xq, sx = _quantize_rows(x)
        ctx.save_for_backward(qweight, wscale)
        ctx.out_dtype = x.dtype
        return torch._scaled_mm(xq, qweight.t(), scale_a=sx, scale_b=wscale.view(1, -1), out_dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):
        qweight, wscale = ctx.saved_tensors
        gq, sg = _quantize_rows(grad * wscale.view(1, -1))  # float32 by promotion: no separate copy
        # b must be column-major [N, K]: the transpose of a row-major [K, N] copy (made per call, freed after)
        b = qweight.t().contiguous().t()
        ones = torch.ones(1, qweight.shape[1], device=grad.device, dtype=torch.float32)
        return torch._scaled_mm(gq, b, scale_a=sg, scale_b=ones, out_dtype=ctx.out_dtype), None, None


class Float8Linear(nn.Linear):
    """A frozen Linear stored in float8 (one scale per output row) that multiplies in float8."""

    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX
        self.weight = nn.Parameter((weight / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), requires_grad=False)
        self.register_buffer("weight_scale", scale.view(-1))  # float32: a bf16 scale would skew whole rows
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def dequantized_weight(self) -> torch.Tensor:
        return (self.weight.float() * self.weight_scale.view(-1, 1)).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.compute_dtype)
        with torch.autocast(x.device.type, enabled=False):
            rows = x.reshape(-1, self.in_features)
            if rows.shape[0] < MIN_ROWS:
                out = F.linear(rows, self.dequantized_weight())
            else:
                out = _Float8Matmul.apply(rows.contiguous(), self.weight, self.weight_scale)
            if self.bias is not None:
                out = out + self.bias.to(out.dtype)
        return out.view(*x.shape[:-1], self.out_features)


def fits_float8(linear: nn.Linear) -> bool:
    """The float8 kernel needs both sides divisible by 16."""
    return linear.in_features % 16 == 0 and linear.out_features % 16 == 0


def relative_error(reference: nn.Linear, candidate: nn.Module, rows: int = 256, seed: int = 0) -> float:
    """||candidate(x) - reference(x)|| / ||reference(x)|| on random activations, in the candidate's dtype."""
    weight = reference.weight
    g = torch.Generator(device=weight.device).manual_seed(seed)
    x = torch.randn(rows, reference.in_features, generator=g, device=weight.device, dtype=torch.float32)
    with torch.no_grad():
        want = F.linear(x, weight.float(), None if reference.bias is None else reference.bias.float())
        got = candidate(x.to(getattr(candidate, "compute_dtype", weight.dtype))).float()
    return float((got - want).norm() / want.norm().clamp(min=1e-12))


def error_summary(errors: dict[str, float]) -> str:
    """'median 2.4%, worst 3.1% (layers.7.feed_forward.w2)' for a log line."""
    if not errors:
        return "no layers"
    ordered = sorted(errors.values())
    worst = max(errors, key=errors.get)
    return f"median {ordered[len(ordered) // 2]:.2%}, worst {errors[worst]:.2%} ({worst})"


def float8_factory(compute_dtype: torch.dtype, errors: dict[str, float] | None = None
                   ) -> Callable[[str, nn.Linear], nn.Module]:
    """A quant.quantize_linears factory: Float8Linear where the shape allows, else the storage-only
    QuantizedLinear; with `errors`, each layer's relative error against its bf16 output is recorded
    (measured before the bf16 weight is dropped)."""
    from trainer.engine.quant import QuantizedLinear

    def make(name: str, linear: nn.Linear) -> nn.Module:
        layer = Float8Linear(linear, compute_dtype) if fits_float8(linear) else QuantizedLinear(linear, "float8")
        if errors is not None:
            errors[name] = relative_error(linear, layer)
        return layer

    return make
