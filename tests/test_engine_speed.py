"""The engine's speed paths on the CPU: the FLOP model, float8 matmul arithmetic, per-block
checkpointing, the step-time split, ETA from the measured rate, the NaN skip without a host sync,
and the one-line fallbacks where a machine lacks the hardware."""

from __future__ import annotations

import pytest
import torch

from trainer.engine import attention as zattention
from trainer.engine import compile_blocks
from trainer.engine import grad_checkpointing as gc_plan
from trainer.engine import model as zmodel
from trainer.engine.fast_linear import Float8Linear, float8_factory, float8_matmul_support, relative_error
from trainer.engine.flops import TransformerShape, image_tokens, step_flops
from trainer.engine.progress import Progress
from trainer.engine.step_timing import PHASES, StepTimer

# ---------------------------------------------------------------- FLOP model


def test_flop_model_matches_a_hand_count_for_the_real_model():
    # 1024 x 1024 px -> 128 x 128 latent -> 64 x 64 patches = 4096 image tokens; a 128-token caption
    t_img, t_cap, t = 4096, 128, 4224
    d, h, r = 3840, 10240, 32
    per_token = 4 * d * d + 3 * d * h  # q, k, v, out + w1, w2, w3 multiply-adds
    assert per_token == 176_947_200
    attn = 2 * t * t * d  # QK^T + PV
    lora = r * (4 * (d + d) + 3 * (d + h))
    adaln = 256 * 4 * d + r * (256 + 4 * d)
    main_fwd = 30 * (t * per_token + attn + t * lora + adaln)
    refiners = 2 * (t_img * per_token + t_cap * per_token + 2 * t_img**2 * d + 2 * t_cap**2 * d + 256 * 4 * d)
    embed = t_img * 64 * d + t_cap * 2560 * d + 2 * 256 * 1024
    final = t * d * 64 + 256 * d
    forward = 2 * (main_fwd + refiners + embed + final)
    backward = 2 * (30 * t * per_token + 2 * 30 * attn + 2 * 30 * t * lora + 2 * 30 * r * (256 + 4 * d) + t * d * 64)

    flops = step_flops(1024, 1024, caption_tokens=128, rank=32)
    assert (flops.image_tokens, flops.caption_tokens) == (t_img, t_cap)
    assert flops.forward == pytest.approx(forward, rel=1e-12)
    assert flops.backward == pytest.approx(backward, rel=1e-12)
    assert flops.model == pytest.approx(1.196e14, rel=1e-3)  # the "about 1.2e14"
    assert flops.recompute == 0 and flops.hardware == flops.model
    # the floor at the H200's measured 790 TFLOP/s bf16 rate
    assert flops.floor_s(790e12) == pytest.approx(0.1514, rel=1e-3)
    assert flops.mfu(0.3029, 790e12) == pytest.approx(0.5, rel=1e-3)

    full = step_flops(1024, 1024, caption_tokens=128, rank=32, checkpointed_blocks=30)
    assert full.recompute == pytest.approx(2 * 30 * (t * (per_token + lora) + attn + adaln), rel=1e-12)
    assert full.model == flops.model and full.hfu(1.0, 1.0) > full.mfu(1.0, 1.0)
    assert step_flops(1024, 1024, 128, 32, batch=2).model == pytest.approx(2 * flops.model)


def test_flop_shape_from_the_tiny_model_config(demo_paths):
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    shape = TransformerShape.from_config(transformer.config)
    assert (shape.dim, shape.hidden, shape.n_layers, shape.n_refiner_layers, shape.cap_feat_dim) == (64, 170, 2, 1, 32)
    assert image_tokens(64, 48, shape) == 32  # 4 x 3 patches, padded to 32


# ---------------------------------------------------------------- float8 matmuls


def test_float8_linear_forward_and_input_gradient_stay_close_to_bf16():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512, bias=True).to(torch.bfloat16)
    layer = Float8Linear(linear)
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight_scale.dtype == torch.float32
    assert isinstance(layer, torch.nn.Linear) and not layer.weight.requires_grad
    assert relative_error(linear, layer) < 0.06  # e4m3 keeps 3 mantissa bits: a few percent

    x = torch.randn(2, 40, 256, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 40, 512) and y.dtype == torch.bfloat16
    grad = torch.randn_like(y)
    y.backward(grad)
    ref_x = x.detach().float().requires_grad_()
    torch.nn.functional.linear(ref_x, linear.weight.float(), linear.bias.float()).backward(grad.float())
    assert float((x.grad.float() - ref_x.grad).norm() / ref_x.grad.norm()) < 0.06

    few = layer(torch.randn(1, 256, dtype=torch.bfloat16))  # one row (adaLN): the expanded-weight path
    assert few.shape == (1, 512)


def test_float8_factory_records_a_per_layer_error_and_keeps_odd_shapes_storage_only():
    from trainer.engine.quant import QuantizedLinear, quantize_linears

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)).to(torch.bfloat16)
    model.requires_grad_(False)
    errors = {}
    assert quantize_linears(model, "float8", float8_factory(torch.bfloat16, errors)) == 2
    assert isinstance(model[0], Float8Linear) and type(model[1]) is QuantizedLinear  # 10 is not a multiple of 16
    assert set(errors) == {"0", "1"} and all(0 < e < 0.1 for e in errors.values())


def test_speed_fallbacks_on_the_cpu_say_why_in_one_line(demo_paths):
    from trainer.engine.speed_setup import quantize
    from trainer.recipes import get_recipe

    cpu = torch.device("cpu")
    assert "CUDA" in float8_matmul_support(cpu)
    lines = []
    transformer = zmodel.load_transformer(demo_paths, cpu, torch.float32)
    config = get_recipe("zimage-turbo").config_from_dict({"quantize_base": "float8"})
    assert quantize(config, transformer, cpu, torch.float32, lines.append) == (False, {})
    assert not compile_blocks.enable(transformer, cpu, demo_paths.zimage_dir / "nowhere", lines.append)
    assert not compile_blocks.is_compiled(transformer)
    choice = zattention.choose("flash", cpu, torch.float32, 2, 32, lines.append)
    assert choice.backends is None
    assert lines == ["quantize_base=float8 is ignored on the CPU.",
                     "torch.compile is off: compiled blocks are built for CUDA GPUs (the CPU build needs a C++ "
                     "toolchain and gains little); the blocks run uncompiled.",
                     "attention_backend=flash applies to CUDA GPUs; the CPU uses PyTorch's default attention."]


# ---------------------------------------------------------------- gradient checkpointing per block


def _grads(transformer, params):
    g = torch.Generator("cpu").manual_seed(1)
    x = [torch.randn(16, 1, 8, 8, generator=g)]
    out = transformer(x, torch.tensor([0.3]), [torch.randn(9, 32, generator=g)], return_dict=False)[0][0]
    for p in params:
        p.grad = None
    out.pow(2).mean().backward()
    return [p.grad.clone() for p in params]


def test_selected_blocks_recompute_and_the_gradients_do_not_change(demo_paths, monkeypatch):
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    params = zmodel.add_lora(transformer, rank=4, alpha=4, seed=0)
    with torch.no_grad():
        for p in params:
            p.add_(0.01)  # LoRA B starts at zero: make every gradient non-trivial
    plain = _grads(transformer, params)

    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(fn)
        return original(fn, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    plan = gc_plan.plan("on", transformer, torch.device("cpu"), tokens=64, trainable_bytes=0)
    assert plan.checkpointed == (0, 1)
    gc_plan.apply(transformer, gc_plan.CheckpointPlan((1,), 2, "test"))
    checkpointed = _grads(transformer, params)
    assert len(calls) == 1  # one main block; the refiners never recompute
    assert all(torch.equal(a, b) for a, b in zip(plain, checkpointed, strict=True))

    gc_plan.apply(transformer, gc_plan.plan("off", transformer, torch.device("cpu"), 64, 0))
    assert not transformer.gradient_checkpointing
    auto = gc_plan.plan("auto", transformer, torch.device("cpu"), 64, 0)
    assert auto.count == 0 and "CPU" in auto.reason


def test_auto_checkpointing_keeps_as_many_blocks_as_the_budget_holds(monkeypatch):
    from types import SimpleNamespace

    real = SimpleNamespace(layers=[None] * 30, config=SimpleNamespace(dim=3840))  # the full-size block list
    gib = gc_plan.GIB
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * gib, 141 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 12 * gib)
    full = gc_plan.block_activation_bytes(4224, 3840, 10240)
    kept = gc_plan.block_activation_bytes(4224, 3840, 10240, selective=True)
    inputs = 4224 * 3840 * 2
    assert full / gib == pytest.approx(1.168, abs=1e-3)  # about 1.2 GiB per block at 1024 px
    assert kept / gib == pytest.approx(0.372, abs=1e-3)  # a quarter of it when selective
    cuda = torch.device("cuda")
    roomy = gc_plan.plan("auto", real, cuda, 4224, trainable_bytes=gib)
    assert roomy.count == 0 and roomy.selective == () and "100.0 GiB usable" in roomy.reason

    def budget(room: float) -> float:  # GiB that leave `room` bytes for activations after the rest
        return (12 * gib + gib + gc_plan.RESERVE_BYTES + full + room + 1) / gib

    # room for 10 plain blocks: the other 20 recompute everything (a selective block costs more time than that)
    room = 30 * inputs + 10 * (full - inputs)
    ten = gc_plan.plan("auto", real, cuda, 4224, trainable_bytes=gib, budget_gb=budget(room))
    assert (ten.plain, ten.count, ten.selective) == (10, 20, ())
    assert "10 of 30 blocks keep theirs" in ten.reason and "selective" not in ten.reason

    # compiled blocks keep about half of an uncompiled block's activations: the same room holds more of them
    half = gc_plan.plan("auto", real, cuda, 4224, trainable_bytes=gib, budget_gb=budget(room), compiled=True)
    share = int(full * gc_plan.COMPILED_SHARE)
    expected = int((room + full - share - 30 * inputs) // (share - inputs))
    assert (half.plain, half.selective) == (expected, ()) == (19, ())
    assert "about 0.64 GiB of activations per block at 4224 tokens (compiled: 0.55 of an uncompiled block's)" \
        in half.reason

    # were selective blocks cheap (AUTO_SELECTIVE): every block selective, and room for 5 of them to keep everything
    monkeypatch.setattr(gc_plan, "AUTO_SELECTIVE", True)
    mixed = gc_plan.plan("auto", real, cuda, 4224, trainable_bytes=gib, budget_gb=budget(30 * kept + 5 * (full - kept)))
    assert (mixed.plain, mixed.selective, mixed.count) == (5, tuple(range(25)), 0)
    assert "vram_budget_gb" in mixed.reason and "5 of 30 blocks keep theirs" in mixed.reason
    # room for 10 selective blocks: the other 20 recompute everything
    tight = gc_plan.plan("auto", real, cuda, 4224, trainable_bytes=gib,
                         budget_gb=budget(30 * inputs + 10 * (kept - inputs)))
    assert (tight.plain, tight.checkpointed, tight.selective) == (0, tuple(range(20)), tuple(range(20, 30)))
    # the same room without selective blocks (compiled): fewer blocks keep anything
    compiled = gc_plan.plan("auto", real, cuda, 4224, trainable_bytes=gib,
                            budget_gb=budget(30 * inputs + 10 * (full - inputs)), selective_ok=False)
    assert (compiled.plain, compiled.count, compiled.selective) == (10, 20, ())
    assert gc_plan.plan("auto", real, cuda, 4224, trainable_bytes=gib, budget_gb=14.0).count == 30
    assert gc_plan.plan("selective", real, cuda, 4224, 0).selective == tuple(range(30))
    assert gc_plan.plan("selective", real, cuda, 4224, 0, selective_ok=False).count == 30


# ---------------------------------------------------------------- step timing and ETA


def test_step_timer_splits_each_step_into_phases():
    timer = StepTimer(torch.device("cpu"))
    assert timer.collect() is None
    for _ in range(3):
        timer.begin()
        for _micro in range(2):
            timer.mark("data")
            timer.mark("forward")
            timer.mark("backward")
        timer.mark("optimizer")
    split = timer.collect()
    assert split["steps"] == 3 and {f"{p}_ms" for p in PHASES} <= set(split)
    assert split["step_ms"] == pytest.approx(sum(split[f"{p}_ms"] for p in PHASES), abs=1e-2)
    assert timer.collect() is None


def test_the_eta_counts_the_last_steps_previews_guessed_from_the_base_models_until_measured():
    now = [0.0]
    progress = Progress(lambda _event: None, total_steps=90, device=torch.device("cpu"), start_step=0,
                        sample_every=50, clock=lambda: now[0])
    progress.expect_pause("sample", 12.0)  # the base model's previews took 6 s: with and without the trigger word
    progress.restart_clock(0)
    now[0] += 2.0
    progress.steps_done(1)
    now[0] += 18.0
    progress.steps_done(10)
    assert progress.eta_s(10) == pytest.approx(80 * 2.0 + 2 * 12.0)  # at step 50, and the last step's (90)
    progress.paused("sample", 20.0, 50)  # measured: it replaces the guess
    progress.expect_pause("sample", 99.0)
    assert progress.eta_s(60) == pytest.approx(30 * 2.0 + 20.0)
    assert progress.eta_s(90) == pytest.approx(20.0)  # trained to the end, the last previews still to come
    progress.paused("sample", 21.0, 90)
    assert progress.eta_s(90) == 0.0


def test_the_eta_told_while_previews_or_a_checkpoint_are_made_counts_them():
    """The page counts down from the ETA of the latest report: told while previews rendered, it left them out, so the
    countdown reached "32 s" and jumped back up when training went on."""
    now, events = [0.0], []
    progress = Progress(events.append, total_steps=100, device=torch.device("cpu"), start_step=0, sample_every=50,
                        save_every=25, clock=lambda: now[0])
    progress.restart_clock(0)
    now[0] += 2.0
    progress.steps_done(1)
    now[0] += 18.0
    progress.steps_done(10)
    progress.paused("sample", 30.0, 10)
    progress.paused("save", 4.0, 10)
    now[0] += 80.0
    progress.steps_done(50)
    progress.emit("training", 50, force=True)
    training = events[-1]["eta_s"]  # 50 steps, the previews at 100, checkpoints at 75 and 100
    assert training == pytest.approx(50 * 2.0 + 30.0 + 2 * 4.0)
    progress.emit("sampling", 50, message="Rendering previews at step 50", force=True)
    assert events[-1]["eta_s"] == pytest.approx(training + 30.0)  # the previews under way now count too
    progress.emit("saving", 50, message="Saving checkpoint at step 50", force=True)
    assert events[-1]["eta_s"] == pytest.approx(training + 4.0)
    progress.paused("sample", 30.0, 99)
    progress.emit("sampling", 100, message="Rendering previews at step 100", force=True)
    assert events[-1]["eta_s"] == pytest.approx(30.0)  # the last previews, counted once


def test_eta_uses_the_measured_step_rate_plus_previews_and_checkpoints():
    now = [100.0]
    events = []
    progress = Progress(events.append, total_steps=100, device=torch.device("cpu"), start_step=0, sample_every=50,
                        save_every=25, clock=lambda: now[0])
    progress.restart_clock(0)
    now[0] += 60.0  # the first step compiled for a minute: its time is a warm-up, replaced by the next stretch
    progress.steps_done(1)
    assert progress.seconds_per_step == pytest.approx(60.0)
    now[0] += 18.0  # 9 steps in 18 s
    progress.steps_done(10)
    progress.emit("training", 10, 0.5, 0.5, force=True)
    assert events[-1]["it_per_s"] == pytest.approx(0.5) and events[-1]["eta_s"] == pytest.approx(90 * 2.0)
    progress.paused("sample", 30.0, 10)  # a preview took 30 s: 2 more previews to come (50, 100)
    progress.paused("save", 4.0, 10)  # a checkpoint took 4 s: 4 more to come (25, 50, 75, 100)
    now[0] += 1000.0  # time spent outside training steps never slows the measured rate
    progress.restart_clock(10)
    now[0] += 20.0
    progress.steps_done(20)
    progress.emit("training", 20, 0.4, 0.45, force=True, timing={"step_ms": 1900.0})
    assert events[-1]["eta_s"] == pytest.approx(80 * 2.0 + 2 * 30.0 + 4 * 4.0)
    assert events[-1]["step_time"] == {"step_ms": 1900.0}
    assert events[-1]["device_name"] == "CPU"  # on a GPU, its name (the job page says what the job ran on)
    # every block recomputes from step 20 (an out-of-memory): the new rate replaces the old at once
    progress.notice("Out of memory at step 21; every block now recomputes its activations.", 20)
    progress.rate_changed(20)
    now[0] += 30.0
    progress.steps_done(30)
    assert progress.seconds_per_step == pytest.approx(3.0)
    progress.emit("training", 30, force=True)
    assert events[-1]["notices"] == ["Out of memory at step 21; every block now recomputes its activations."]
    # a report with no loss (a preview, a checkpoint) keeps the latest one: the page never shows the loss vanish
    progress.emit("sampling", 30, message="Rendering previews at step 30", force=True)
    assert (events[-1]["loss"], events[-1]["smooth_loss"]) == (0.4, 0.45)


# ---------------------------------------------------------------- NaN skip without a host sync


def test_a_nan_step_is_skipped_on_the_device_by_the_fused_optimizer():
    from types import SimpleNamespace

    from trainer.engine.loop import TrainingLoop

    weight = torch.nn.Parameter(torch.ones(4))
    model = torch.nn.Linear(4, 4)
    model.requires_grad_(False)
    model.lora = weight  # stands in for the LoRA parameters
    config = SimpleNamespace(seed=0, learning_rate=0.1, warmup_steps=0, steps=10, lr_schedule="constant",
                             gradient_accumulation=1, max_grad_norm=1.0, log_every=None, caption_dropout=0.0)
    plan = SimpleNamespace(batch=lambda index: [0])
    cached = SimpleNamespace(latents=[torch.zeros(1)], embeddings={})
    loop = TrainingLoop(config, model, [weight], cached, [], plan, torch.device("cpu"), None)
    loop.optimizer = torch.optim.AdamW([weight], lr=0.1, fused=True)
    loop.skip_on_device = True
    losses = iter([float("nan"), 1.0])
    loop.losses = lambda batch: iter([("flow", (weight * next(losses)).sum())])
    loop.step()
    assert torch.equal(weight.detach(), torch.ones(4)) and float(loop.optimizer.state[weight]["step"]) == 0
    loop.step()
    assert not torch.equal(weight.detach(), torch.ones(4)) and float(loop.optimizer.state[weight]["step"]) == 1
    records = loop.flush()
    assert [r.loss for r in records] == [None, 4.0] and loop.state.nan_total == 1 and loop.state.nan_in_a_row == 0
    assert loop.flush() == []


def test_a_job_too_short_to_earn_the_compile_back_runs_uncompiled():
    from trainer.engine.speed_setup import compile_wanted
    from trainer.recipes import get_recipe
    from trainer.recipes.zimage_plan import COMPILE_MIN_STEPS

    recipe, cuda, lines = get_recipe("zimage-turbo"), torch.device("cuda"), []
    short = recipe.config_from_dict({"steps": 200})
    assert short.compile and not compile_wanted(short, cuda, lines.append)
    assert lines == ["torch.compile is off for this job: 200 steps would save less time than the one-time compile "
                     f"takes (about a minute); it pays from {COMPILE_MIN_STEPS} steps."]
    assert compile_wanted(recipe.config_from_dict({"steps": COMPILE_MIN_STEPS}), cuda, lines.append)
    assert not compile_wanted(recipe.config_from_dict({"steps": 3000, "compile": False}), cuda, lines.append)
    assert compile_wanted(short, torch.device("cpu"), lines.append)  # the CPU says its own reason (compile_blocks)
    assert len(lines) == 1
    # the estimate agrees: a short job's steps are counted uncompiled, with no compile time
    estimate = recipe.estimate
    base = {"resolutions": [1024], "sample_every": 0, "sample_prompts": ["a"]}
    per_step = [estimate(recipe.config_from_dict({**base, "steps": n, "compile": c}), 20, "NVIDIA H100 80GB HBM3",
                         demo=False).seconds for n in (299, 300) for c in (True, False)]
    assert per_step[0] == per_step[1] and per_step[2] < per_step[3]
