"""Training a LoKr: one full-size layer's forward + backward with the trainable change applied through its factors
(trainer.engine.lokr_train.KronLinear) vs peft's own LoKr layer (which builds w1 ⊗ w2 at every forward), a rank-32
LoRA and the bare frozen layer (the baseline), with what each keeps for the backward pass.

    python benchmarks/lokr_layer.py [--tokens 1024] [--factors 16 8] [--rounds 5] [--device cpu|cuda]

The layers are the transformer's real ones (3840 -> 3840 for attention, 3840 -> 10240 for the feed-forward), random
weights, the same input for every kind, the kinds alternating round by round so machine noise hits them alike. Saved
bytes are the tensors autograd keeps for the backward pass beyond what the bare layer keeps (its weight; the input is
shared by all). On a GPU it
runs in bf16 autocast at 4,224 tokens (a 1024 px image and its caption) unless --tokens says otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

SHAPES = {"attention (3840 -> 3840)": (3840, 3840), "feed-forward (3840 -> 10240)": (3840, 10240)}


class Holder(nn.Module):
    def __init__(self, in_f: int, out_f: int):
        super().__init__()
        self.layer = nn.Linear(in_f, out_f, bias=False)


def build(kind: str, in_f: int, out_f: int, factor: int, dev: torch.device,
          base_dtype: torch.dtype = torch.float32) -> tuple[nn.Module, list[nn.Parameter]]:
    """The layer of `kind` with random weights: the frozen base in `base_dtype` (bf16 on a GPU, as the engine holds
    it), the trained weights in float32."""
    from peft import LoKrConfig, LoraConfig, inject_adapter_in_model
    from peft.tuners.lokr.layer import Linear as PeftLoKrLinear

    from trainer.engine.lokr_train import FULL_RANK, KronLinear

    torch.manual_seed(0)
    model = Holder(in_f, out_f).to(base_dtype)
    model.requires_grad_(False)
    if kind == "lora r32":
        model = inject_adapter_in_model(LoraConfig(r=32, lora_alpha=32, target_modules=["layer"]), model)
    elif kind != "bare":
        config = LoKrConfig(r=FULL_RANK, alpha=FULL_RANK, decompose_factor=factor, target_modules=["layer"])
        model = inject_adapter_in_model(config, model)
        if kind.startswith("ours"):
            model.layer.__class__ = KronLinear
        else:
            assert type(model.layer) is PeftLoKrLinear
    params = []
    for name, param in model.named_parameters():
        if ".lokr_" in name or ".lora_" in name:
            param.data = param.data.float().normal_(0, 0.02)  # trained weights, not the zero start
            param.requires_grad_(True)
            params.append(param)
    return model.to(dev), params


def step(model: nn.Module, params, x: torch.Tensor, autocast: bool) -> int:
    """One forward + backward; the bytes autograd saved for it, beyond the input."""
    saved = []

    def pack(t):
        if t.data_ptr() != x.data_ptr():
            saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast(x.device.type, torch.bfloat16, enabled=autocast):
        out = model.layer(x)
    out.float().square().mean().backward()
    for p in params:
        p.grad = None
    return sum(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--factors", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    tokens = args.tokens or (4224 if gpu else 1024)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    print(f"# LoKr training layer: {torch.cuda.get_device_name() if gpu else 'CPU'}, torch {torch.__version__}, "
          f"{tokens} tokens, {'bf16 autocast' if gpu else 'float32'}, {args.rounds} rounds (median)\n")
    print("| layer | kind | ms / forward+backward | vs bare | saved for backward, beyond the bare layer's |")
    print("|---|---|---:|---:|---:|")
    for label, (in_f, out_f) in SHAPES.items():
        kinds = ["bare", "lora r32"] + [f"{who} f{f}" for f in args.factors for who in ("ours", "peft")]
        base_dtype = torch.bfloat16 if gpu else torch.float32
        built = {k: build(k.split(" f")[0] if " f" in k else k, in_f, out_f,
                          int(k.rsplit("f", 1)[1]) if " f" in k else 0, dev, base_dtype) for k in kinds}
        x = torch.randn(1, tokens, in_f, device=dev, dtype=base_dtype, requires_grad=True)
        times = {k: [] for k in kinds}
        saved = {}
        for _ in range(args.rounds + 1):  # the first round warms up
            for kind in kinds:
                model, params = built[kind]
                sync()
                started = time.perf_counter()
                saved[kind] = step(model, params, x, gpu)
                sync()
                times[kind].append(time.perf_counter() - started)
        bare = statistics.median(times["bare"][1:])
        for kind in kinds:
            ms = statistics.median(times[kind][1:])
            extra = (saved[kind] - saved["bare"]) / 2**20
            print(f"| {label} | {kind} | {ms * 1e3:.1f} | {ms / bare:.2f} | {extra:.1f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
