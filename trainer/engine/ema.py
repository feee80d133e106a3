"""An exponential moving average of the LoRA weights (`ema_decay`).

The average, not the last step's weights, is what the job writes (checkpoints' LoRA files and the final
LoRA) and what its previews show: smoother, and less sensitive to the step the run stops at. Training
itself goes on with the raw weights. The decay warms up as `(1 + n) / (10 + n)` (the usual EMA warm-up)
until it reaches `ema_decay`, a pure function of the step, so exact resume needs only the averages
(kept in the checkpoint's state). A step the optimizer skipped (NaN) left the weights as they were, so
its update only pulls the average toward those same weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def decay_at(decay: float, updates: int) -> float:
    """The decay of the `updates`-th update (1-based)."""
    return min(decay, (1 + updates) / (10 + updates))


class LoraEMA:
    """The average of `params` (float32, on their device), one update per optimizer step."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().float().clone() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """After optimizer step number `step` (1-based): shadow += (1 - decay) * (param - shadow)."""
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1.0 - decay_at(self.decay, step))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averages inside the block (to write or render them), its own weights after."""
        with torch.no_grad():
            kept = [p.detach().clone() for p in self.params]
            for param, average in zip(self.params, self.shadow, strict=True):
                param.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, own in zip(self.params, kept, strict=True):
                    param.copy_(own)

    def state_dict(self) -> list[torch.Tensor]:
        return [average.detach().cpu().clone() for average in self.shadow]

    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        if len(state) != len(self.shadow) or any(a.shape != b.shape for a, b in zip(state, self.shadow, strict=True)):
            raise ValueError("the checkpoint's LoRA averages do not match this job's LoRA")
        with torch.no_grad():
            for average, saved in zip(self.shadow, state, strict=True):
                average.copy_(saved)
