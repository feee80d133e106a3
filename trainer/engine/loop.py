"""The training loop: Z-Image flow-matching loss, gradient accumulation, NaN guard and step timing.

A step never waits for the GPU: the loss and the finite-check stay on the device, the optimizer skips
a NaN step on the device (fused AdamW's `found_inf`), and `flush()` reads the pending steps' losses
in one go every `log_every` steps. On the CPU nothing is asynchronous and every step is flushed.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from trainer.engine.device_data import DeviceData
from trainer.engine.ema import LoraEMA
from trainer.engine.errors import TrainingError
from trainer.engine.masks import masked_mse
from trainer.engine.progress import MetricsWriter, Progress  # noqa: F401 - re-exported for callers
from trainer.engine.step_timing import StepTimer

NUM_TRAIN_TIMESTEPS = 1000
MAX_NAN_IN_A_ROW = 5
SMOOTHING = 0.9
GPU_LOG_EVERY = 10


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


# Prodigy keeps its running sums over every 11th weight of a tensor (its authors' memory-saving setting)
PRODIGY_SLICE = 11


def make_optimizer(config, params, device: torch.device, log: Callable[[str], None]):
    kwargs = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    choice = config.optimizer
    if choice == "prodigy":
        return make_prodigy(config, params, log)
    if choice == "adamw8bit":
        if device.type != "cuda":
            raise TrainingError("optimizer adamw8bit needs a CUDA GPU; set optimizer to adamw (or auto) on this "
                                "machine.")
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise TrainingError("optimizer adamw8bit needs the bitsandbytes package; install it or set "
                                "optimizer to adamw.") from exc
        log("Optimizer: 8-bit AdamW (bitsandbytes); it cannot skip a NaN step on the GPU, so each step "
            "waits for the GPU once.")
        return bnb.optim.AdamW8bit(params, **kwargs)
    # auto is AdamW: on an H200 its fused step took 10 ms for a rank-32 LoRA against 35 ms for 8-bit AdamW
    # (benchmarks/RESULTS.md), with no wait for the GPU; its float32 moments (8 bytes per LoRA weight, 0.7 GB
    # at rank 32) are what the memory plan counts anyway
    if device.type == "cuda":
        # one multi-tensor kernel for all LoRA tensors, and it skips a NaN step on the GPU (found_inf)
        log("Optimizer: AdamW, fused CUDA kernel over the LoRA parameters.")
        return torch.optim.AdamW(params, fused=True, **kwargs)
    log("Optimizer: AdamW (the fused kernel is used on CUDA GPUs).")
    return torch.optim.AdamW(params, **kwargs)


def make_prodigy(config, params, log: Callable[[str], None]):
    """Prodigy (prodigyopt): Adam whose step size it estimates itself from the distance the weights travel;
    learning_rate multiplies that estimate (1 is its authors' setting)."""
    try:
        from prodigyopt import Prodigy
    except ImportError as exc:
        raise TrainingError("optimizer prodigy needs the prodigyopt package; install it (pip install prodigyopt) "
                            "or set optimizer to auto.") from exc
    log(f"Optimizer: Prodigy (it finds the step size itself; learning_rate {config.learning_rate:g} multiplies it, "
        "the job page shows the step size it uses).")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its weight-decay mode
        return Prodigy(params, lr=config.learning_rate, weight_decay=config.weight_decay, use_bias_correction=True,
                       safeguard_warmup=config.warmup_steps > 0, slice_p=PRODIGY_SLICE)


def step_size(optimizer, lr: float) -> float:
    """The size of the step the optimizer takes for learning rate `lr`: Prodigy scales it by its estimate d."""
    return lr * optimizer.param_groups[0].get("d", 1.0)


def smoothed(before: float | None, seen: int | None, loss: float) -> tuple[float, int | None]:
    """The smoothed loss after one more finite `loss`, and how many it now holds: an exponential average whose
    start is corrected for (Adam's bias correction), so a run of a few dozen steps shows the mean of its recent
    losses, not mostly its first (each step's loss swings with the noise level drawn). `seen` None: an average
    from a checkpoint written before the count was kept, long past its start."""
    if before is None:
        return loss, 1
    if seen is None:
        return SMOOTHING * before + (1 - SMOOTHING) * loss, None
    held, now = 1 - SMOOTHING ** seen, 1 - SMOOTHING ** (seen + 1)
    return (SMOOTHING * held * before + (1 - SMOOTHING) * loss) / now, seen + 1


@dataclass
class LoopState:
    step: int = 0
    smooth_loss: float | None = None
    last_loss: float | None = None
    losses_seen: int | None = 0  # finite losses in smooth_loss; None: a checkpoint from before it was counted
    nan_total: int = 0
    nan_in_a_row: int = 0


@dataclass
class StepRecord:
    """A finished step as read back by flush(): loss None when the step was skipped (NaN/inf)."""

    step: int
    loss: float | None
    smooth_loss: float | None
    lr: float
    time: float


class TrainingLoop:
    """One job's optimisation. `step` + `flush` is what train() and the benchmarks both drive."""

    def __init__(self, config, transformer, params, cached, samples, plan, device: torch.device,
                 autocast_dtype: torch.dtype | None, empty_text: str = "", attention=None,
                 data: DeviceData | None = None, preservation=None):
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
        self.attention = attention or contextlib.nullcontext
        self.data = data or DeviceData(cached, device, self.model_dtype)
        self.timer = StepTimer(device)
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor, float, float]] = []
        self.skip_on_device = False  # set by setup_optimizer
        default_every = 1 if device.type != "cuda" else GPU_LOG_EVERY
        self.log_every = getattr(config, "log_every", None) or default_every
        decay = getattr(config, "ema_decay", 0.0) or 0.0
        self.ema = LoraEMA(params, decay) if decay > 0 else None
        self.preservation = preservation  # preserve_class: trainer.engine.preservation.OutputPreservation

    def averaged(self):
        """Inside: the LoRA holds its moving average (ema_decay), to write or render it; else unchanged."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    def setup_optimizer(self, log: Callable[[str], None]) -> None:
        self.optimizer = make_optimizer(self.config, self.params, self.device, log)
        self.skip_on_device = bool(getattr(self.optimizer, "_step_supports_amp_scaling", False))

    @property
    def lr(self) -> float:
        """Learning rate of the next step: a pure function of the step, so resume needs no schedule state."""
        return self.config.learning_rate * self.lr_factor(self.state.step)

    # ------------------------------------------------------------ one micro-batch
    def losses(self, batch: list[int]) -> Iterator[tuple[str, torch.Tensor]]:
        """The micro-batch's losses, each backpropagated before the next is computed (so only one pass's
        activations are held at a time): "flow", the flow-matching loss; then, with preserve_class,
        "preservation" (trainer.engine.preservation) on the same noisy latents."""
        cfg, gen, data = self.config, self.generator, self.data
        x0 = torch.stack([data.latent(i) for i in batch])
        dropped = torch.rand(len(batch), generator=gen) < cfg.caption_dropout
        texts = [self.empty_text if drop else self.samples[i].item.caption for i, drop in zip(batch, dropped.tolist(),
                                                                                             strict=True)]
        embeds = [data.embedding(t) for t in texts]
        sigma, weight = sample_sigmas(cfg.timestep_sampling, len(batch), gen, cfg.shift)
        noise = data.to_device(torch.randn(x0.shape, generator=gen))
        sigma, weight = data.to_device(sigma), data.to_device(weight)
        self.timer.mark("data")
        masks = [data.mask(i) for i in batch] if data.has_masks else None  # alpha_mask: the visible part
        yield "flow", (self.flow_loss(x0, noise, sigma, embeds, masks) * weight).mean()
        if self.preservation is not None:
            extra = self.preservation.loss(self, batch, x0, noise, sigma, weight)
            if extra is not None:
                yield "preservation", extra

    @staticmethod
    def noised(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.view(-1, 1, 1, 1)
        return (1 - s) * x0 + s * noise

    def predict(self, x_t: torch.Tensor, sigma: torch.Tensor, embeds: list[torch.Tensor]) -> torch.Tensor:
        """The velocity (noise - x0) the transformer predicts for noisy latents `x_t` at `sigma`, in float32."""
        inputs = list(x_t.to(self.model_dtype).unsqueeze(2).unbind(0))  # each [C, F=1, H, W]
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            # Z-Image takes t = 1 - sigma (1 = clean) and predicts the negated velocity
            out = self.transformer(inputs, 1 - sigma, embeds, return_dict=False)[0]
        return -torch.stack([o.float() for o in out]).squeeze(2)

    def flow_loss(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, embeds: list[torch.Tensor],
                  masks: list[torch.Tensor | None] | None) -> torch.Tensor:
        """Per-example flow-matching loss of clean latents `x0` noised to `sigma` with `noise` (the training
        step's and the evaluation's one formula)."""
        velocity = self.predict(self.noised(x0, noise, sigma), sigma, embeds)
        return masked_mse((velocity - (noise - x0)) ** 2, masks)

    # ------------------------------------------------------------ one optimizer step
    def step(self) -> None:
        """Queues one optimizer step on the device; its loss is read by the next flush()."""
        cfg, st, timer = self.config, self.state, self.timer
        accum = cfg.gradient_accumulation
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        timer.begin()
        self.optimizer.zero_grad(set_to_none=True)
        total = extra = None
        with self.attention():
            for micro in range(accum):
                for kind, loss in self.losses(self.plan.batch(st.step * accum + micro)):
                    loss = loss / accum
                    timer.mark("forward")
                    loss.backward()  # a NaN loss gives NaN gradients; the step is then skipped below
                    timer.mark("backward")
                    if kind == "flow":  # the loss shown is the flow-matching loss alone
                        total = loss.detach() if total is None else total + loss.detach()
                    else:
                        extra = loss.detach() if extra is None else extra + loss.detach()
        finite = torch.isfinite(total) if extra is None else torch.isfinite(total) & torch.isfinite(extra)
        if cfg.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            finite = finite & torch.isfinite(norm).to(finite.device)  # a step without gradients: a CPU zero
        if self.skip_on_device:
            self.optimizer.found_inf = (~finite).float()  # read by the fused kernel: no host sync
            self.optimizer.step()
        elif bool(finite):  # waits for the GPU; free on the CPU
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(st.step + 1)
        timer.mark("optimizer")
        st.step += 1
        self.pending.append((st.step, total, finite, step_size(self.optimizer, lr), time.time()))

    def flush(self) -> list[StepRecord]:
        """Reads the queued steps' losses (one wait for the GPU) and updates the loop state in step
        order. Raises TrainingError after MAX_NAN_IN_A_ROW skipped steps in a row."""
        if not self.pending:
            return []
        pending, self.pending = self.pending, []
        values = torch.stack([torch.stack([t.float(), f.float()]) for _, t, f, _, _ in pending]).cpu().tolist()
        st, records = self.state, []
        for (step, _, _, lr, stamp), (loss, finite) in zip(pending, values, strict=True):
            if finite and math.isfinite(loss):
                st.nan_in_a_row = 0
                st.last_loss = loss
                st.smooth_loss, st.losses_seen = smoothed(st.smooth_loss, st.losses_seen, loss)
                records.append(StepRecord(step, loss, st.smooth_loss, lr, stamp))
                continue
            st.nan_total += 1
            st.nan_in_a_row += 1
            records.append(StepRecord(step, None, st.smooth_loss, lr, stamp))
            if st.nan_in_a_row >= MAX_NAN_IN_A_ROW:
                raise TrainingError(f"The loss was NaN or infinite {st.nan_in_a_row} steps in a row (at step "
                                    f"{step}); lower learning_rate (now {self.config.learning_rate:g}) and start "
                                    "again.")
        return records

    # ------------------------------------------------------------ state for exact resume
    def state_dict(self) -> dict:
        if self.pending:
            raise RuntimeError("flush() the pending steps before saving the loop state")
        return {
            "step": self.state.step,
            "loop": vars(self.state).copy(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "lora": {n: p.detach().cpu().clone() for n, p in self.transformer.named_parameters() if p.requires_grad},
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
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
        self.state = LoopState(**{"losses_seen": None, **state["loop"]})
        if self.ema is not None:  # a checkpoint from before ema_decay was set starts its average here
            if "ema" in state:
                self.ema.load_state_dict(state["ema"])
            else:
                self.ema = LoraEMA(self.params, self.ema.decay)
