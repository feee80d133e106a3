"""Memory planning on the CPU: the measured activations of one block (what autograd saves, counted
exactly, plain and selectively checkpointed), the plan built from that measurement, selective
recomputation giving the same gradients, and a run that runs out of memory recovering by recomputing
more, with the same LoRA as a run that never ran out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.test_engine_train import _lora, _losses, make_dataset, tiny_config
from trainer.engine import TrainingError, train
from trainer.engine import activation_memory as am
from trainer.engine import grad_checkpointing as gc_plan
from trainer.engine import model as zmodel
from trainer.engine.loop import TrainingLoop
from trainer.engine.speed_setup import measure_block

GIB = gc_plan.GIB


class Pair(nn.Module):
    """frozen Linear -> GELU -> trainable Linear, plus a shared input that must not count."""

    def __init__(self, d_in=8, d_mid=16, d_out=4):
        super().__init__()
        self.frozen = nn.Linear(d_in, d_mid).requires_grad_(False)
        self.trained = nn.Linear(d_mid, d_out)

    def forward(self, x, scale):
        return self.trained(nn.functional.gelu(self.frozen(x))) * scale


def test_saved_bytes_counts_what_autograd_keeps_and_nothing_shared():
    block, tokens = Pair(), 10
    x, scale = torch.randn(tokens, 8), torch.randn(1)  # scale: an input every block shares
    got = am.saved_bytes(block, (x, scale), {})
    # the frozen linear keeps nothing but its weight (a parameter); GELU keeps its input [10, 16];
    # the trainable linear keeps its input, the GELU output [10, 16]; the product keeps only the shared
    # scale, which is not counted
    assert got == tokens * (16 + 16) * 4


def test_block_inputs_stop_at_the_first_main_block(demo_paths):
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    zmodel.add_lora(transformer, rank=4, alpha=4, seed=0)
    ran = []
    hook = transformer.layers[1].register_forward_pre_hook(lambda *_: ran.append(1))
    latent, caption = torch.randn(16, 1, 8, 8), torch.randn(12, transformer.config.cap_feat_dim)
    args, _ = am.block_inputs(transformer, lambda: transformer([latent], torch.tensor([0.5]), [caption]))
    hook.remove()
    assert not ran  # the rest of the model never ran
    assert args[0].shape[-1] == transformer.config.dim and not args[0].requires_grad

    small = am.measure(transformer, lambda: transformer([latent], torch.tensor([0.5]), [caption]))
    big_latent = torch.randn(16, 1, 16, 16)
    big = am.measure(transformer, lambda: transformer([big_latent], torch.tensor([0.5]), [caption]))
    # 8x8 latent -> 16 image tokens padded to 32, 16x16 -> 64; the caption is padded to 32 in both
    assert (small.tokens, big.tokens) == (32 + 32, 64 + 32)
    assert small.saved_bytes > 0
    # activations grow with the sequence (flash-style attention on the CPU keeps O(tokens))
    assert big.saved_bytes / small.saved_bytes == pytest.approx(big.tokens / small.tokens, rel=0.15)
    assert small.at(big.tokens) == pytest.approx(big.saved_bytes, rel=0.15)


def test_measure_block_uses_the_biggest_example_and_never_fails_the_run(demo_paths):
    from types import SimpleNamespace

    from trainer.engine.cache import CachedData
    from trainer.engine.data import ImageItem, Sample
    from trainer.engine.device_data import DeviceData

    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    zmodel.add_lora(transformer, rank=4, alpha=4, seed=0)
    dim = transformer.config.cap_feat_dim
    cached = CachedData(latents=[torch.randn(16, 8, 8), torch.randn(16, 16, 12)],
                        embeddings={"a": torch.randn(5, dim), "b": torch.randn(40, dim)})
    samples = [Sample(ImageItem(None, "a", "0", 64, 64), (64, 64)), Sample(ImageItem(None, "b", "1", 96, 128),
                                                                         (96, 128))]
    data = DeviceData(cached, torch.device("cpu"), torch.float32)
    lines = []
    got = measure_block(transformer, torch.device("cpu"), samples, data, torch.float32, None,
                        lambda: torch.autocast("cpu", enabled=False), lines.append)
    # the 96x128 example: 48 image tokens and a 40-token caption, each padded to a multiple of 32
    assert got.tokens == 64 + 64 and not lines

    broken = SimpleNamespace(layers=[], config=transformer.config)  # no main blocks
    assert measure_block(broken, torch.device("cpu"), samples, data, torch.float32, None,
                         lambda: torch.autocast("cpu", enabled=False), lines.append) is None
    assert "rule of thumb" in lines[-1]


def test_lora_under_autocast_keeps_no_copy_of_its_input_and_computes_the_same(demo_paths):
    """peft casts a LoRA layer's input to the float32 LoRA weights and autocast casts it back to bf16, so each
    LoRA layer kept its own copy of an input the base layer holds already. Without that round trip the block
    keeps less, and its output and every gradient are the same bit for bit."""
    from peft.tuners.lora.layer import Linear as PeftLoraLinear

    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.bfloat16)
    params = zmodel.add_lora(transformer, rank=4, alpha=4, seed=0)
    layers = [m for m in transformer.modules() if isinstance(m, PeftLoraLinear)]
    assert layers and all(type(m) is not PeftLoraLinear for m in layers)
    assert all(p.dtype == torch.float32 for p in params)
    with torch.no_grad():  # lora_B starts at zero: give the LoRA a say in the output
        for p in params:
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(p.numel()))
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(16, 1, 8, 8, generator=g, dtype=torch.bfloat16)
    caption = torch.randn(12, transformer.config.cap_feat_dim, generator=g, dtype=torch.bfloat16)

    def forward():
        return transformer([latent], torch.tensor([0.5]), [caption], return_dict=False)[0][0]

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def run():
        transformer.zero_grad(set_to_none=True)
        with bf16():
            out = forward()
        out.float().square().mean().backward()
        return out.detach(), [p.grad.clone() for p in params], am.measure(transformer, forward, bf16).saved_bytes

    ours = run()
    for m in layers:
        m.__class__ = PeftLoraLinear  # peft's own cast, as before
    peft_own = run()
    assert torch.equal(ours[0], peft_own[0])
    assert all(torch.equal(a, b) for a, b in zip(ours[1], peft_own[1], strict=True))
    assert ours[2] < peft_own[2]


def test_plan_from_a_measured_block(monkeypatch):
    from types import SimpleNamespace

    real = SimpleNamespace(layers=[None] * 30, config=SimpleNamespace(dim=3840))
    free = {"gib": 40}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["gib"] * GIB, 141 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 12 * GIB)
    cuda = torch.device("cuda")
    measured = am.BlockMemory(saved_bytes=2 * GIB, tokens=4224, selective_bytes=GIB // 2)
    tokens = 2 * 4224  # batch 2: 4 GiB per plain block, 1 GiB per selective one, 62 MB per recomputing one
    inputs = tokens * 3840 * 2 / GIB

    # 40 GiB - 12 allocated - 1 LoRA - 2 reserve - 4 set aside for a recomputing block = 21 GiB: as many
    # blocks as fit keep everything and the rest recompute everything (selective blocks cost more time)
    default = gc_plan.plan("auto", real, cuda, tokens, trainable_bytes=GIB, measured=measured)
    assert (default.plain, default.selective, default.count) == (int((21 - 30 * inputs) // (4 - inputs)), (), 26)
    assert "measured 4.00 GiB" in default.reason and "selective" not in default.reason

    # were selective blocks cheap (AUTO_SELECTIVE): not all 30 blocks fit even selectively, so as many as fit are
    # selective and the rest recompute everything
    monkeypatch.setattr(gc_plan, "AUTO_SELECTIVE", True)
    chosen = gc_plan.plan("auto", real, cuda, tokens, trainable_bytes=GIB, measured=measured)
    assert "measured 4.00 GiB" in chosen.reason and "(1.00 GiB selective)" in chosen.reason
    selective = int((21 - 30 * inputs) // (1 - inputs))
    assert (chosen.plain, len(chosen.selective), chosen.count) == (0, selective, 30 - selective) == (0, 20, 10)
    assert chosen.checkpointed == tuple(range(10)) and chosen.selective == tuple(range(10, 30))

    # compiled blocks cannot recompute selectively: plain and full only
    compiled = gc_plan.plan("auto", real, cuda, tokens, trainable_bytes=GIB, measured=measured, selective_ok=False)
    assert (compiled.plain, compiled.selective, compiled.count) == (int((21 - 30 * inputs) // (4 - inputs)), (), 26)

    # 20 GiB more: every block fits selectively, and the room left turns 3 of them plain
    free["gib"] = 60
    roomy = gc_plan.plan("auto", real, cuda, tokens, trainable_bytes=GIB, measured=measured)
    assert (roomy.plain, len(roomy.selective), roomy.count) == (3, 27, 0)
    assert "3 of 30 blocks keep theirs" in roomy.reason

    # without a measured selective figure the rule of thumb stands in for it
    only_full = gc_plan.plan("auto", real, cuda, tokens, trainable_bytes=GIB,
                             measured=am.BlockMemory(saved_bytes=2 * GIB, tokens=4224))
    rule = gc_plan.block_activation_bytes(tokens, 3840, 10240, selective=True) / GIB
    assert f"({rule:.2f} GiB selective)" in only_full.reason


def test_the_next_lighter_plan_goes_to_full_recomputation(monkeypatch):
    plan = gc_plan.CheckpointPlan((0,), 4, "auto", (2, 3))  # one full, two selective (the selective mode), one plain
    lighter, what = gc_plan.lighter(plan, True, "out of memory at step 3")
    assert lighter.checkpointed == (0, 1, 2, 3) and lighter.selective == () and "gradient checkpointing on" in what

    monkeypatch.setattr(gc_plan, "AUTO_SELECTIVE", True)  # were selective blocks cheap: that step first
    plan = gc_plan.CheckpointPlan((0,), 4, "auto", (1,))  # one full, one selective, two plain
    lighter, what = gc_plan.lighter(plan, True, "out of memory at step 3")
    assert (lighter.checkpointed, lighter.selective, lighter.plain) == ((0,), (1, 2, 3), 0)
    assert "selective recomputation" in what and lighter.reason == "out of memory at step 3"
    lightest, what = gc_plan.lighter(lighter, True, "again")
    assert lightest.checkpointed == (0, 1, 2, 3) and lightest.selective == () and "gradient checkpointing on" in what
    assert gc_plan.lighter(lightest, True, "again") is None
    assert gc_plan.lighter(plan, False, "compiled")[0].checkpointed == (0, 1, 2, 3)  # no selective step


def _oom_once_at(step_index: int, monkeypatch) -> list[int]:
    """The loss of step `step_index` (1-based) runs out of memory the first time it is computed."""
    original, raised = TrainingLoop.losses, []

    def losses(self, batch):
        if self.state.step + 1 == step_index and not raised:
            raised.append(self.state.step + 1)
            self.generator.manual_seed(12345)  # the failed try used up random numbers: the retry must not care
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, batch)

    monkeypatch.setattr(TrainingLoop, "losses", losses)
    return raised


def test_out_of_memory_switches_to_full_recomputation_and_trains_the_same_lora(tmp_path, demo_paths, monkeypatch):
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=2)
    cfg = tiny_config(steps=8, save_every=4)
    clean = train(cfg, dataset, tmp_path / "clean", demo_paths, None, None, device="cpu", cache_dir=tmp_path / "c")

    raised, events = _oom_once_at(3, monkeypatch), []
    recovered = train(cfg, dataset, tmp_path / "oom", demo_paths, None, events.append, device="cpu",
                      cache_dir=tmp_path / "c")
    assert raised == [3] and recovered["steps"] == 8
    log = (tmp_path / "oom" / "log.txt").read_text()
    # the job page keeps it in view: every later report carries the notice
    assert events[-1]["notices"] == ["Out of memory at step 3; every block now recomputes its activations "
                                     "(gradient checkpointing on) and the step runs again."]
    assert events[-1]["notices"][0] in log
    first = next(e for e in events if "notices" in e)  # reported at once, after step 2
    assert first["step"] == 2 and first["message"] == first["notices"][0]
    # recomputation changes no number: the same losses and the same LoRA as the run that never ran out
    assert _losses(tmp_path / "oom") == _losses(tmp_path / "clean")
    a, b = _lora(clean["lora_path"]), _lora(recovered["lora_path"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_out_of_memory_with_every_block_recomputed_fails_with_the_next_advice(tmp_path, demo_paths, monkeypatch):
    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TrainingLoop, "step", oom)
    monkeypatch.setattr(gc_plan, "AUTO_SELECTIVE", True)  # the longest way down: selective, then full
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    with pytest.raises(TrainingError, match="OOM.*lower rank") as info:
        train(tiny_config(), dataset, tmp_path / "job", demo_paths, None, None, device="cpu",
              cache_dir=tmp_path / "cache")
    assert "gradient_checkpointing" not in info.value.message  # it is already recomputing every block
    log = (tmp_path / "job" / "log.txt").read_text()
    # first every block turned selective, then every block recomputed everything, then the run gave up
    assert log.count("Out of memory at step 1") == 2 and "ran out of memory at step 1" in log
    assert log.index("(selective recomputation)") < log.index("(gradient checkpointing on)")


def test_previews_that_run_out_of_memory_decode_in_tiles_then_give_way_to_training(tmp_path, demo_paths,
                                                                                 monkeypatch):
    from trainer.engine.sampling import Sampler

    original, calls = Sampler._render, []

    def render(self, pipe, transformer, prompt, kind, text=None):
        calls.append((kind, self._vae.use_tiling))
        if not self._vae.use_tiling:  # fails until the VAE decodes in tiles
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return original(self, pipe, transformer, prompt, kind, text)

    monkeypatch.setattr(Sampler, "_render", render)
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    result = train(tiny_config(steps=4, sample_every=2, save_every=4), dataset, tmp_path / "job", demo_paths, None,
                   None, device="cpu", cache_dir=tmp_path / "cache")
    assert result["steps"] == 4
    log = (tmp_path / "job" / "log.txt").read_text()
    assert log.count("the VAE now decodes in tiles") == 1 and "Previews saved: samples/step_000002" in log
    assert (tmp_path / "job" / "samples" / "step_000004" / "0.png").is_file()
    assert (tmp_path / "job" / "lora" / "proof_grid.png").is_file()

    def never(self, *args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    monkeypatch.setattr(Sampler, "_render", never)
    result = train(tiny_config(steps=4, sample_every=2, save_every=4), dataset, tmp_path / "job2", demo_paths, None,
                   None, device="cpu", cache_dir=tmp_path / "cache")
    assert result["steps"] == 4 and Path(result["lora_path"]).is_file()  # the run finished without previews
    log = (tmp_path / "job2" / "log.txt").read_text()
    assert "Previews at step 2 skipped: out of memory while rendering 64x64; training goes on" in log
    assert log.count("Previews at step 4 skipped") == 1  # the end of the run does not try the same step again
    samples = tmp_path / "job2" / "samples"
    assert not list(samples.glob("step_*")) and not list(samples.glob(".tmp*"))  # no half-written previews
    lora_folder = tmp_path / "job2" / "lora"
    assert (lora_folder / "README.txt").is_file() and not (lora_folder / "proof_grid.png").exists()


@pytest.mark.parametrize("float8", [False, True], ids=["products", "float8-products"])
def test_selective_blocks_keep_less_and_give_the_same_gradients(demo_paths, monkeypatch, float8):
    """The tiny model's products have short inner dimensions; lowering the bar makes the selective
    blocks keep them (and the float8 kernel's), which is the path the full-size model takes."""
    from tests.test_engine_speed import _grads
    from trainer.engine import selective_checkpoint
    from trainer.engine.fast_linear import float8_factory
    from trainer.engine.quant import quantize_linears

    monkeypatch.setattr(selective_checkpoint, "MIN_INNER", 8)
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    params = zmodel.add_lora(transformer, rank=4, alpha=4, seed=0)
    if float8:  # torch._scaled_mm runs on the CPU too
        assert quantize_linears(transformer, "float8", float8_factory(torch.float32)) > 0
    with torch.no_grad():
        for p in params:
            p.add_(0.01)  # LoRA B starts at zero: make every gradient non-trivial
    kept, original = set(), selective_checkpoint.keeps

    def keeps(op, args):
        if original(op, args):
            kept.add(str(op))
            return True
        return False

    monkeypatch.setattr(selective_checkpoint, "keeps", keeps)

    plain = _grads(transformer, params)
    every = tuple(range(len(transformer.layers)))
    gc_plan.apply(transformer, gc_plan.CheckpointPlan((), len(every), "test", every))
    kept.clear()
    selective = _grads(transformer, params)
    assert all(torch.equal(a, b) for a, b in zip(plain, selective, strict=True))
    product = "aten._scaled_mm.default" if float8 else "aten.mm.default"
    assert product in kept and any("attention" in op for op in kept)

    gc_plan.apply(transformer, gc_plan.plan("off", transformer, torch.device("cpu"), 64, 0))
    latent, caption = torch.randn(16, 1, 8, 8), torch.randn(12, transformer.config.cap_feat_dim)
    measured = am.measure(transformer, lambda: transformer([latent], torch.tensor([0.5]), [caption]))
    assert 0 < measured.selective_bytes < measured.saved_bytes / 2


class FakeTritonError(RuntimeError):
    """What a kernel that fails to build raises (its class lives in Triton)."""


FakeTritonError.__module__ = "triton.compiler.errors"


def test_compiled_blocks_that_fail_run_uncompiled_and_train_the_same_lora(tmp_path, demo_paths, monkeypatch):
    """compile is on by default: a compiled graph that fails when it first runs (a backward graph is compiled at
    the first backward pass) costs a notice and an uncompiled run, never the job."""
    import torch._dynamo

    from trainer.engine import compile_blocks

    dataset = make_dataset(tmp_path / "datasets" / "toy", count=2)
    cfg = tiny_config(steps=4, save_every=4, compile=False)
    clean = train(cfg, dataset, tmp_path / "clean", demo_paths, None, None, device="cpu", cache_dir=tmp_path / "c")

    built = []

    def broken_backend(graph, inputs):
        def run(*args):
            raise FakeTritonError("PassManager::run failed")
        built.append(graph)
        return run

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", False)
    monkeypatch.setattr(compile_blocks, "compile_support", lambda device: None)  # as on a GPU with Triton
    original = compile_blocks.compile_blocks
    monkeypatch.setattr(compile_blocks, "compile_blocks", lambda t, mode=None: original(t, mode, broken_backend))
    events = []
    try:
        compiled = train(tiny_config(steps=4, save_every=4, compile=True), dataset, tmp_path / "compiled", demo_paths,
                         None, events.append, device="cpu", cache_dir=tmp_path / "c")
    finally:
        torch.compiler.set_stance("default")
        torch._dynamo.reset()
    assert built and compiled["steps"] == 4
    log = (tmp_path / "compiled" / "log.txt").read_text()
    assert "torch.compile: " in log
    notice = ("torch.compile failed at step 1 (FakeTritonError: PassManager::run failed); the blocks run uncompiled "
              "from now on (slower steps, same results) and the step runs again.")
    assert notice in log and events[-1]["notices"] == [notice]
    # before the first step the job page says why it waits (compiling takes a minute on a GPU)
    first_training = next(e for e in events if e["phase"] == "training")
    assert first_training["message"].startswith("Compiling the transformer's blocks for this GPU")
    assert _losses(tmp_path / "compiled") == _losses(tmp_path / "clean")
    a, b = _lora(clean["lora_path"]), _lora(compiled["lora_path"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # an error of the model itself is not taken for a compile failure
    assert not compile_blocks.is_compile_error(ValueError("bad shape"))
    try:
        raise RuntimeError("wrapped") from FakeTritonError("x")
    except RuntimeError as exc:
        assert compile_blocks.is_compile_error(exc)
