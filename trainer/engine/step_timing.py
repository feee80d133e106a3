"""Where a training step's time goes: data, forward, backward, optimizer.

On a GPU the phases are marked with CUDA events, which cost a few microseconds and never wait; their
times are read only when the loop reads the loss anyway (every `log_every` steps), so timing adds no
host-GPU synchronisation. On the CPU, work is synchronous and a clock read at each mark is exact.
"""

from __future__ import annotations

import time

import torch

PHASES = ("data", "forward", "backward", "optimizer")


class StepTimer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._steps: list[list[tuple[str, object]]] = []  # per step: (phase that ends here, event or time)

    def _stamp(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def begin(self) -> None:
        self._steps.append([("", self._stamp())])

    def mark(self, phase: str) -> None:
        """The time since the previous mark belongs to `phase` (a phase may be marked several times
        per step, once per micro-batch; its intervals add up)."""
        if self._steps:
            self._steps[-1].append((phase, self._stamp()))

    def collect(self) -> dict[str, float] | None:
        """Average milliseconds per step of each phase over the steps since the last collect, plus
        `step_ms` and `steps`; None when no step was timed. Waits for the last event on a GPU."""
        steps, self._steps = [p for p in self._steps if len(p) > 1], []
        if not steps:
            return None
        if self.cuda:
            steps[-1][-1][1].synchronize()
        totals = dict.fromkeys(PHASES, 0.0)
        for marks in steps:
            for (_, start), (phase, end) in zip(marks, marks[1:], strict=False):
                ms = start.elapsed_time(end) if self.cuda else (end - start) * 1000.0
                totals[phase] = totals.get(phase, 0.0) + ms
        n = len(steps)
        out = {f"{phase}_ms": round(value / n, 3) for phase, value in totals.items()}
        out["step_ms"] = round(sum(totals.values()) / n, 3)
        out["steps"] = n
        return out

    def drop_open_step(self) -> None:
        """Forget the step begun last (it failed and runs again)."""
        if self._steps:
            self._steps.pop()

    def discard(self) -> None:
        """Forget the steps timed so far (after a compile warm-up, say)."""
        self._steps = []
