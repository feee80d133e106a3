"""Pieces of benchmarks/gpu_zimage.py: the full-size transformer with random weights, one measured run
of the engine's own TrainingLoop under a set of speed settings, the attention-kernel check, and the
peer's training step (plain diffusers + peft, the way diffusers' LoRA training examples do it)."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

REAL_CONFIG = {  # Tongyi-MAI/Z-Image-Turbo transformer/config.json
    "all_patch_size": (2,), "all_f_patch_size": (1,), "in_channels": 16, "dim": 3840, "n_layers": 30,
    "n_refiner_layers": 2, "n_heads": 30, "n_kv_heads": 30, "norm_eps": 1e-5, "qk_norm": True,
    "cap_feat_dim": 2560, "rope_theta": 256.0, "t_scale": 1000.0, "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
}
TINY_CONFIG = {  # the demo model's shape: lets the whole script run on a CPU as a check of its logic
    **REAL_CONFIG, "dim": 64, "n_layers": 2, "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2,
    "cap_feat_dim": 32, "axes_dims": [8, 12, 12],
}
GIB = 1 << 30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_transformer(shape: dict, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """The transformer with random weights, allocated and initialised straight on the device: the same
    seed gives the same weights for every run, ours and the peer's."""
    from diffusers import ZImageTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(seed)
            model = ZImageTransformer2DModel(**shape)
    finally:
        torch.set_default_dtype(previous)
    model.requires_grad_(False)
    return model


def matmul_rate(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of an n^3 bf16 matrix product (fp32 on the CPU), measured here and now."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type != "cuda":
        n, repeats = 512, 3
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def class_caption(index: int) -> str:
    return f"class caption {index}"


def synthetic_data(shape: dict, size: int, caption_tokens: int, batch: int):
    """CachedData + samples for `batch` images of one bucket with captions of `caption_tokens` tokens."""
    from trainer.engine.cache import CachedData
    from trainer.engine.data import ImageItem, Sample

    g = torch.Generator("cpu").manual_seed(0)
    latents = [torch.randn(16, size // 8, size // 8, generator=g) for _ in range(batch)]
    captions = {f"caption {i}": torch.randn(caption_tokens, shape["cap_feat_dim"], generator=g) for i in range(batch)}
    captions[""] = torch.randn(8, shape["cap_feat_dim"], generator=g)
    for i in range(batch):  # preserve_class's captions, the class word in place of the trigger word
        captions[class_caption(i)] = torch.randn(caption_tokens, shape["cap_feat_dim"], generator=g)
    samples = [Sample(ImageItem(Path(f"{i}.png"), f"caption {i}", f"{i:064d}", size, size), (size, size))
               for i in range(batch)]
    return CachedData(latents=latents, embeddings=captions), samples


@dataclass
class RunSettings:
    """One row of the levers table: what the engine does differently in this run."""

    name: str
    checkpointing: str = "on"  # on / off / auto
    budget_gb: float | None = None
    attention: str = "default"
    optimizer: str = "adamw-foreach"  # adamw-foreach (the old default path) / adamw-fused / adamw8bit / prodigy
    log_every: int = 1
    resident: bool = False
    batch: int = 1
    note: str = ""
    profile: bool = False  # list the attention kernels one step launches
    compiled: bool = False  # the blocks are compiled: no selective recomputation
    evaluate: bool = False  # also time one evaluation-loss measurement (trainer.engine.evaluation), said in the note
    preserve: bool = False  # preserve_class: every step also makes the output-preservation passes


@dataclass
class RunResult:
    name: str
    s_per_step: float | None = None
    warmup_s: float | None = None  # the first steps: includes compiling, when compiled
    s_per_sample: float | None = None
    peak_gib: float | None = None
    checkpointed_blocks: int | None = None
    selective_blocks: int | None = None
    block_gib: float | None = None  # one block's saved activations as the engine measured them (auto only)
    block_selective_gib: float | None = None  # the same, selectively checkpointed
    split: dict | None = None
    loss: float | None = None
    attention_kernels: list[str] = field(default_factory=list)
    attention_wanted: str = ""  # the kernel the engine put first (after its own fallback check)
    note: str = ""
    error: str | None = None


def engine_run(transformer, params, shape: dict, settings: RunSettings, args, device: torch.device, log) -> RunResult:
    """The engine's TrainingLoop on the given (already LoRA-wrapped, maybe quantized) transformer."""
    from trainer.engine import attention as zattention
    from trainer.engine import grad_checkpointing as gc_plan
    from trainer.engine.data import BatchPlan
    from trainer.engine.device_data import DeviceData
    from trainer.engine.loop import TrainingLoop
    from trainer.engine.speed_setup import longest_sequence, measure_block
    from trainer.recipes import get_recipe

    result = RunResult(settings.name, note=settings.note)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    model_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    heads = shape["n_heads"]
    attention = zattention.choose(settings.attention, device, model_dtype, heads, shape["dim"] // heads, log)
    result.attention_wanted = attention.label
    config = get_recipe("zimage-turbo").config_from_dict({
        "rank": args.rank, "resolutions": [args.size], "caption_dropout": 0.0, "batch_size": settings.batch,
        "optimizer": settings.optimizer if settings.optimizer in ("adamw8bit", "prodigy") else "adamw",
        "log_every": settings.log_every, "learning_rate": 1.0 if settings.optimizer == "prodigy" else 1e-5,
    })
    cached, samples = synthetic_data(shape, args.size, args.caption_tokens, settings.batch)
    data = DeviceData(cached, device, model_dtype, resident=settings.resident)
    measured = None
    if settings.checkpointing == "auto" and device.type == "cuda":  # as the engine plans: from one measured block
        from trainer.engine.compile_blocks import eager

        # the engine measures before it compiles; run compiled, the measurement's early exit from the first block
        # broke that block's compiled frame, and the row ran uncompiled (0.457 s/step against 0.301)
        with eager():
            measured = measure_block(transformer, device, samples, data, model_dtype, autocast, attention, log)
        if measured:
            result.block_gib = round(measured.saved_bytes / GIB, 3)
            result.block_selective_gib = round(measured.selective_bytes / GIB, 3)
    tokens = longest_sequence(samples, cached, settings.batch)
    plan = gc_plan.plan(settings.checkpointing, transformer, device, tokens, gc_plan.trainable_bytes(params),
                        settings.budget_gb, measured, selective_ok=not settings.compiled,
                        compiled=settings.compiled)
    gc_plan.apply(transformer, plan)
    result.checkpointed_blocks, result.selective_blocks = plan.count, len(plan.selective)
    result.note = "; ".join(x for x in (settings.note, plan.reason) if x)
    preservation = None
    if settings.preserve:
        from trainer.engine.preservation import OutputPreservation

        preservation = OutputPreservation("class", [class_caption(i) for i in range(len(samples))], 1.0)
    loop = TrainingLoop(config, transformer, params, cached, samples, BatchPlan(samples, settings.batch, 0), device,
                        autocast, attention=attention, data=data, preservation=preservation)
    loop.setup_optimizer(lambda _line: None)
    if settings.optimizer == "adamw-foreach":  # what the engine did before: no fused kernel, a sync per step
        loop.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        loop.skip_on_device = False
    transformer.train()

    def steps(n: int) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            loop.step()
            if loop.state.step % loop.log_every == 0:
                loop.flush()
        loop.flush()
        sync(device)
        return (time.perf_counter() - start) / n

    try:
        result.warmup_s = steps(args.warmup) * args.warmup
        loop.timer.discard()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rounds = [steps(args.steps) for _ in range(args.rounds)]
        result.s_per_step = statistics.median(rounds)
        result.s_per_sample = result.s_per_step / settings.batch
        result.split = loop.timer.collect()
        result.loss = loop.state.last_loss
        if device.type == "cuda":
            result.peak_gib = torch.cuda.max_memory_allocated(device) / GIB
        if settings.profile:
            result.attention_kernels = attention_kernels(loop.step, device)
            loop.flush()
        if settings.evaluate:
            result.note = "; ".join(x for x in (result.note, evaluation_cost(loop, samples, result, device)) if x)
    except torch.OutOfMemoryError as exc:
        result.error = f"out of memory: {str(exc).splitlines()[0][:120]}"
    finally:
        loop.pending.clear()
        for p in params:
            p.grad = None
    return result  # the caller frees the GPU memory once this frame (optimizer state included) is gone


def evaluation_cost(loop, samples, result: RunResult, device: torch.device) -> str:
    """One evaluation as a job makes it (EVAL_IMAGES images x the noise levels, forward only), timed after a warm-up
    one, against the step just measured."""
    from trainer.engine.evaluation import Evaluator
    from trainer.evaluation_set import EVAL_IMAGES, EVAL_SIGMAS

    evaluator = Evaluator(loop, samples, [0] * EVAL_IMAGES, [], 1)
    evaluator.measure(0)
    sync(device)
    start = time.perf_counter()
    evaluator.measure(1)
    sync(device)
    seconds = time.perf_counter() - start
    forwards = EVAL_IMAGES * len(EVAL_SIGMAS)
    return (f"one evaluation ({forwards} forward passes) {seconds:.2f} s = {seconds / result.s_per_step:.1f} steps, "
            f"{seconds / (250 * result.s_per_step) * 100:.1f}% of training at one per 250 steps")


ATTENTION_WORDS = ("flash", "cudnn", "fmha", "efficient", "attention", "sdpa", "softmax")


def attention_kernels(step, device: torch.device) -> list[str]:
    """Names of the attention kernels one step launched (read with the profiler), so the table can say
    which SDPA backend really ran."""
    if device.type != "cuda":
        return []
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        sync(device)
    names = {e.key for e in prof.key_averages() if any(w in e.key.lower() for w in ATTENTION_WORDS)}
    return sorted(names, key=len)[:6]


def backend_seen(kernels: list[str]) -> str:
    text = " ".join(kernels).lower()
    for word, backend in (("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "efficient"), ("efficient", "efficient")):
        if word in text:
            return backend
    return "math/unknown" if kernels else "not profiled"


# ---------------------------------------------------------------- the peer: plain diffusers + peft
def peer_run(shape: dict, args, device: torch.device, checkpointing: bool, log, make_model=None,
             label: str = "diffusers + peft") -> RunResult:
    """The training step as diffusers' LoRA examples write it (train_dreambooth_lora_*): bf16 weights and
    bf16 LoRA (their bf16 setting casts nothing to float32), autocast, torch AdamW, gradient checkpointing
    when asked for, loss.item() every step for the progress bar. Same random weights, targets, rank,
    latent and caption as ours."""
    import torch.nn.functional as F
    from peft import LoraConfig

    from trainer.engine.model import LORA_TARGET

    name = f"peer: {label} ({'gradient checkpointing' if checkpointing else 'no checkpointing'})"
    result = RunResult(name)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    transformer = (make_model or build_transformer)(shape, device, dtype)
    transformer.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                       target_modules=LORA_TARGET))
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), weight_decay=1e-4, eps=1e-8)
    g = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn(1, 16, args.size // 8, args.size // 8, generator=g).to(device, dtype)
    caption = torch.randn(args.caption_tokens, shape["cap_feat_dim"], generator=g).to(device, dtype)

    def step() -> float:
        noise = torch.randn_like(latents)
        sigmas = torch.rand(1, device=device)
        noisy = (1 - sigmas.view(-1, 1, 1, 1)) * latents + sigmas.view(-1, 1, 1, 1) * noise
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pred = transformer(list(noisy.unsqueeze(2).unbind(0)), 1 - sigmas, [caption])[0]
        loss = F.mse_loss(-torch.stack(pred).squeeze(2).float(), (noise - latents).float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach().item()  # the examples log the loss each step

    def steps(n: int) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            result.loss = step()
        sync(device)
        return (time.perf_counter() - start) / n

    try:
        steps(args.warmup)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result.s_per_step = result.s_per_sample = statistics.median(steps(args.steps) for _ in range(args.rounds))
        if device.type == "cuda":
            result.peak_gib = torch.cuda.max_memory_allocated(device) / GIB
    except torch.OutOfMemoryError as exc:
        result.error = f"out of memory: {str(exc).splitlines()[0][:120]}"
    return result  # the caller frees the GPU memory once this frame (model included) is gone
