"""Progress reports (it/s, ETA, GPU memory, step-time split) and metrics.jsonl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import torch

PROGRESS_EVERY_S = 1.0
RATE_SMOOTHING = 0.7  # weight of the previous rate when a new interval is measured


class MetricsWriter:
    """metrics.jsonl: one JSON line per step, appended and flushed."""

    def __init__(self, path, resume_step: int):
        self.path = path
        if path.exists():  # steps after the checkpoint we resume from will be redone: drop them
            kept = [line for line in path.read_text("utf-8").splitlines() if _step_of(line) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept), "utf-8")
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def write_many(self, records: list[dict]) -> None:
        if records:
            self.handle.write("".join(json.dumps(r) + "\n" for r in records))
            self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def last_losses(path, up_to_step: int) -> tuple[float | None, float | None]:
    """(loss, smooth_loss) of the last metrics line at or before `up_to_step`: what a resumed run shows
    until its first step."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError:
        return None, None
    for line in reversed(lines):
        if _step_of(line) <= up_to_step:
            try:
                record = json.loads(line)
                return record.get("loss"), record.get("smooth_loss")
            except ValueError:
                return None, None
    return None, None


def reached_step(path) -> int | None:
    """The last step the metrics record (an interrupted run's, before a resume trims them back to its checkpoint)."""
    try:
        steps = [_step_of(line) for line in path.read_text("utf-8").splitlines()]
    except OSError:
        return None
    steps = [step for step in steps if step < 1 << 62]
    return max(steps) if steps else None


def resumed_notice(checkpoint: int, reached: int | None) -> str | None:
    """What the job page says when a run goes on from a checkpoint behind the step it had reached."""
    if reached is None or reached <= checkpoint:
        return None
    return (f"Resumed from the checkpoint at step {checkpoint}: the run had reached step {reached} when it ended, "
            f"so steps {checkpoint + 1}-{reached} are trained again.")


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


def _events_after(step: int, total: int, every: int) -> int:
    """How many multiples of `every` lie in (step, total]."""
    return total // every - step // every if every else 0


class Progress:
    """Throttled on_progress calls with it/s, ETA and GPU memory.

    The rate is measured over training time only: the loop reports each stretch of steps it ran
    (`steps_done`), and the time spent rendering previews or saving checkpoints is measured apart
    (`paused`) and added to the ETA once per remaining preview/checkpoint."""

    def __init__(self, callback: Callable[[dict], None], total_steps: int, device: torch.device, start_step: int,
                 sample_every: int = 0, save_every: int = 0, clock: Callable[[], float] = time.monotonic,
                 eval_every: int = 0):
        self.callback, self.total, self.device = callback, total_steps, device
        # what the job runs on, for its page, the compare view and the LoRA's README
        self.device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        self.sample_every, self.save_every, self.clock = sample_every, save_every, clock
        self.eval_every = eval_every
        self.evaluation: dict | None = None  # the latest evaluation loss (see trainer.engine.evaluation)
        self.start_step, self.started = start_step, clock()
        self.last_emit = -1e18
        self.step = start_step  # the latest step reported, for error messages
        self.seconds_per_step: float | None = None
        self.pause_s: dict[str, float] = {}
        self.paused_at: dict[str, int] = {}  # the step of each kind's latest pause (the last step's previews)
        self._mark: tuple[int, float] | None = None
        self._warming_up = True  # the first stretch holds one-time work (CUDA start-up, compiling)
        self.timing: dict | None = None
        self.notices: list[str] = []  # what the run changed on its own (and why), shown on the job page
        self.loss: float | None = None  # the latest loss, kept on reports that carry none (previews, saves)
        self.smooth_loss: float | None = None

    def gpu_mem_gb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 1e9, 2)

    # ------------------------------------------------------------ measuring
    def restart_clock(self, step: int) -> None:
        """Training (re)starts at `step` now: the next stretch is measured from here."""
        self._mark = (step, self.clock())

    def steps_done(self, step: int) -> None:
        """Training reached `step`; the wall time since the last mark was spent on training steps."""
        now = self.clock()
        if self._mark is not None and step > self._mark[0] and now > self._mark[1]:
            per_step = (now - self._mark[1]) / (step - self._mark[0])
            previous = self.seconds_per_step
            if previous is None or self._warming_up:  # a first, warm-up stretch is replaced, not averaged in
                self.seconds_per_step = per_step
                self._warming_up = previous is None
            else:
                self.seconds_per_step = RATE_SMOOTHING * previous + (1 - RATE_SMOOTHING) * per_step
        self._mark = (step, now)

    def paused(self, kind: str, seconds: float, step: int) -> None:
        """A preview ("sample") or checkpoint ("save") took `seconds`; training goes on from `step`."""
        self.pause_s[kind] = seconds
        self.paused_at[kind] = step
        self.restart_clock(step)

    def expect_pause(self, kind: str, seconds: float) -> None:
        """A first guess of a pause not measured yet (the previews of a step, from the base model's before the first
        step): the ETA counts it until the real one is measured."""
        self.pause_s.setdefault(kind, seconds)

    def rate_changed(self, step: int) -> None:
        """The steps from `step` on run at another speed (every block recomputes now, say): the next
        measured stretch replaces the rate instead of being averaged into it."""
        self._warming_up = True
        self.restart_clock(step)

    def eta_s(self, step: int, pausing: str | None = None) -> float | None:
        """`pausing`: the pause under way now ("sample", "save"), counted too: the page counts down from here, and
        a countdown that left out the previews being rendered reached "32 s" and then jumped back up."""
        if self.seconds_per_step is None:
            return None
        eta = (self.total - step) * self.seconds_per_step
        samples = _events_after(step, self.total, self.sample_every)
        if step < self.total and (not self.sample_every or self.total % self.sample_every):
            samples += 1  # the last step's previews, made for the proof grid wherever it falls
        if step >= self.total and self.paused_at.get("sample", -1) < self.total:
            samples += 1  # the last step is trained, its previews are still to come (or under way now)
        elif pausing == "sample":
            samples += 1
        if pausing == "save":
            eta += self.pause_s.get("save", 0.0)
        eta += samples * self.pause_s.get("sample", 0.0)
        eta += _events_after(step, self.total, self.save_every) * self.pause_s.get("save", 0.0)
        eta += _events_after(step, self.total, self.eval_every) * self.pause_s.get("eval", 0.0)
        return eta

    # ------------------------------------------------------------ reporting
    def emit(self, phase: str, step: int, loss=None, smooth=None, message: str = "", force: bool = False,
             timing: dict | None = None) -> None:
        now = self.clock()
        self.step = step
        if loss is not None:
            self.loss, self.smooth_loss = loss, smooth
        if timing is not None:
            self.timing = timing
        if not force and now - self.last_emit < PROGRESS_EVERY_S:
            return
        self.last_emit = now
        rate = 1.0 / self.seconds_per_step if self.seconds_per_step else None
        eta = self.eta_s(step, {"sampling": "sample", "saving": "save"}.get(phase))
        self.callback({
            "phase": phase,
            "step": step,
            "total_steps": self.total,
            "loss": self.loss,
            "smooth_loss": self.smooth_loss,
            "it_per_s": round(rate, 4) if rate else None,
            "eta_s": round(eta, 1) if eta is not None else None,
            "gpu_mem_gb": self.gpu_mem_gb(),
            "device_name": self.device_name,
            "step_time": self.timing,
            "message": message,
            **({"notices": list(self.notices)} if self.notices else {}),
            **({"evaluation": dict(self.evaluation)} if self.evaluation else {}),
        })

    def notice(self, text: str, step: int, limit: int = 20) -> None:
        """Something the user should know that did not stop the run; reported at once and kept."""
        self.notices = [*self.notices, text][-limit:]
        self.emit("training", step, message=text, force=True)
