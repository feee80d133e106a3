"""The training loop: Z-Image flow-matching loss, gradient accumulation, NaN guard, progress,
metrics and cooperative stop/sample/save between steps."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainer.engine.errors import TrainingError

NUM_TRAIN_TIMESTEPS = 1000
MAX_NAN_IN_A_ROW = 5
SMOOTHING = 0.9
PROGRESS_EVERY_S = 1.0


def _bell_weights(n: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """ai-toolkit's bell-shaped, mean-normalised timestep loss weights (highest mid-schedule)."""
    x = torch.arange(n, dtype=torch.float32)
    y = torch.exp(-2 * ((x - n / 2) / n) ** 2)
    y = y - y.min()
    return y * (n / y.sum())


# ai-toolkit's training grid: timesteps 1000 .. 1, i.e. sigma 1.0 .. 0.001
GRID_SIGMAS = torch.linspace(NUM_TRAIN_TIMESTEPS, 1, NUM_TRAIN_TIMESTEPS) / NUM_TRAIN_TIMESTEPS
GRID_WEIGHTS = _bell_weights()


def sample_sigmas(mode: str, n: int, generator: torch.Generator, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma, loss weight) per example; sigma is the noise fraction in (0, 1]."""
    if mode in ("weighted", "uniform"):
        index = torch.randint(0, NUM_TRAIN_TIMESTEPS, (n,), generator=generator)
        weight = GRID_WEIGHTS[index] if mode == "weighted" else torch.ones(n)
        return GRID_SIGMAS[index], weight
    if mode == "shift":
        u = torch.rand(n, generator=generator).clamp(min=1.0 / NUM_TRAIN_TIMESTEPS)
        return shift * u / (1 + (shift - 1) * u), torch.ones(n)
    if mode == "sigmoid":
        return torch.sigmoid(torch.randn(n, generator=generator)), torch.ones(n)
    raise ValueError(f"unknown timestep sampling {mode!r}")


def lr_lambda(config) -> Callable[[int], float]:
    warmup, total = config.warmup_steps, config.steps

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def make_optimizer(config, params, device: torch.device, log: Callable[[str], None]):
    kwargs = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    choice = config.optimizer
    if choice in ("auto", "adamw8bit") and device.type == "cuda":
        try:
            import bitsandbytes as bnb

            log("Optimizer: 8-bit AdamW (bitsandbytes).")
            return bnb.optim.AdamW8bit(params, **kwargs)
        except ImportError as exc:
            if choice == "adamw8bit":
                raise TrainingError("optimizer adamw8bit needs the bitsandbytes package; install it or set "
                                    "optimizer to adamw.") from exc
    elif choice == "adamw8bit":
        raise TrainingError("optimizer adamw8bit needs a CUDA GPU; set optimizer to adamw (or auto) on this machine.")
    log("Optimizer: AdamW.")
    return torch.optim.AdamW(params, **kwargs)


@dataclass
class LoopState:
    step: int = 0
    smooth_loss: float | None = None
    last_loss: float | None = None
    nan_total: int = 0
    nan_in_a_row: int = 0


class TrainingLoop:
    """One job's optimisation. `run_steps` is what train() and the benchmark both drive."""

    def __init__(self, config, transformer, params, cached, samples, plan, device: torch.device,
                 autocast_dtype: torch.dtype | None, empty_text: str = ""):
        self.config, self.transformer, self.params = config, transformer, params
        self.cached, self.samples, self.plan = cached, samples, plan
        self.device, self.autocast_dtype = device, autocast_dtype
        self.model_dtype = next(p.dtype for p in transformer.parameters() if not p.requires_grad
                                and p.dtype.is_floating_point and p.dtype.itemsize > 1)
        self.empty_text = empty_text
        self.generator = torch.Generator("cpu").manual_seed(config.seed + 1)
        self.state = LoopState()
        self.optimizer = None
        self.lr_factor = lr_lambda(config)

    def setup_optimizer(self, log: Callable[[str], None]) -> None:
        self.optimizer = make_optimizer(self.config, self.params, self.device, log)

    @property
    def lr(self) -> float:
        """Learning rate of the next step: a pure function of the step, so resume needs no schedule state."""
        return self.config.learning_rate * self.lr_factor(self.state.step)

    # ------------------------------------------------------------ one micro-batch
    def loss(self, batch: list[int]) -> torch.Tensor:
        cfg, gen, dev = self.config, self.generator, self.device
        x0 = torch.stack([self.cached.latents[i] for i in batch]).to(dev)
        dropped = torch.rand(len(batch), generator=gen) < cfg.caption_dropout
        texts = [self.empty_text if drop else self.samples[i].item.caption for i, drop in zip(batch, dropped.tolist(),
                                                                                             strict=True)]
        embeds = [self.cached.embeddings[t].to(dev, self.model_dtype) for t in texts]
        sigma, weight = sample_sigmas(cfg.timestep_sampling, len(batch), gen, cfg.shift)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        s = sigma.to(dev).view(-1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        inputs = list(x_t.to(self.model_dtype).unsqueeze(2).unbind(0))  # each [C, F=1, H, W]
        with torch.autocast(dev.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            # Z-Image takes t = 1 - sigma (1 = clean) and predicts the negated velocity
            out = self.transformer(inputs, (1 - sigma).to(dev), embeds, return_dict=False)[0]
        velocity = -torch.stack([o.float() for o in out]).squeeze(2)
        per_example = ((velocity - (noise - x0)) ** 2).mean(dim=(1, 2, 3))
        return (per_example * weight.to(dev)).mean()

    # ------------------------------------------------------------ one optimizer step
    def step(self) -> float | None:
        """Runs one optimizer step; returns the loss, or None when the step was skipped for NaN/inf."""
        cfg, st = self.config, self.state
        accum = cfg.gradient_accumulation
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        total, finite = 0.0, True
        for micro in range(accum):
            loss = self.loss(self.plan.batch(st.step * accum + micro)) / accum
            value = loss.item()
            if not math.isfinite(value):
                finite = False
                break
            loss.backward()
            total += value
        if finite and cfg.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            finite = bool(torch.isfinite(norm))
        if finite:
            self.optimizer.step()
            st.nan_in_a_row = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            st.nan_total += 1
            st.nan_in_a_row += 1
        st.step += 1
        if not finite:
            if st.nan_in_a_row >= MAX_NAN_IN_A_ROW:
                raise TrainingError(f"The loss was NaN or infinite {st.nan_in_a_row} steps in a row (at step "
                                    f"{st.step}); lower learning_rate (now {cfg.learning_rate:g}) and start again.")
            return None
        st.last_loss = total
        st.smooth_loss = total if st.smooth_loss is None else SMOOTHING * st.smooth_loss + (1 - SMOOTHING) * total
        return total

    # ------------------------------------------------------------ state for exact resume
    def state_dict(self) -> dict:
        return {
            "step": self.state.step,
            "loop": vars(self.state).copy(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "lora": {n: p.detach().cpu().clone() for n, p in self.transformer.named_parameters() if p.requires_grad},
        }

    def load_state_dict(self, state: dict) -> None:
        params = dict(self.transformer.named_parameters())
        if set(state["lora"]) != {n for n, p in params.items() if p.requires_grad}:
            raise TrainingError("The checkpoint does not match this job's LoRA settings (rank or targets changed); "
                                "start a new job instead of resuming.")
        with torch.no_grad():
            for name, value in state["lora"].items():
                if params[name].shape != value.shape:
                    raise TrainingError("The checkpoint's LoRA rank differs from this job's rank; start a new job "
                                        "instead of resuming.")
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.state = LoopState(**state["loop"])


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

    def close(self) -> None:
        self.handle.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


class Progress:
    """Throttled on_progress calls with it/s, ETA and GPU memory."""

    def __init__(self, callback: Callable[[dict], None], total_steps: int, device: torch.device, start_step: int):
        self.callback, self.total, self.device = callback, total_steps, device
        self.start_step, self.started = start_step, time.monotonic()
        self.last_emit = 0.0
        self.step = start_step  # the latest step reported, for error messages

    def gpu_mem_gb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 1e9, 2)

    def emit(self, phase: str, step: int, loss=None, smooth=None, message: str = "", force: bool = False) -> None:
        now = time.monotonic()
        self.step = step
        if not force and now - self.last_emit < PROGRESS_EVERY_S:
            return
        self.last_emit = now
        done = step - self.start_step
        rate = done / (now - self.started) if done > 0 and now > self.started else None
        eta = (self.total - step) / rate if rate else None
        self.callback({
            "phase": phase,
            "step": step,
            "total_steps": self.total,
            "loss": loss,
            "smooth_loss": smooth,
            "it_per_s": round(rate, 4) if rate else None,
            "eta_s": round(eta, 1) if eta is not None else None,
            "gpu_mem_gb": self.gpu_mem_gb(),
            "message": message,
        })
