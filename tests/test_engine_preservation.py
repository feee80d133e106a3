"""preserve_class (output preservation) on the tiny pipeline: the class captions, the loss that is exactly zero
while the LoRA is zero, a LoRA trained with it that leaves the class word far closer to the base model than one
trained without it while still learning the trigger word, the job's log, file metadata and README, when it
stays off, and what it does to the estimate. Exact resume with it on: tests/test_engine_options.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.test_engine_train import _lora, make_dataset, tiny_config
from trainer.engine import TrainingControl, train
from trainer.engine.preservation import OutputPreservation, class_caption, lora_off
from trainer.recipes import get_recipe

# ---------------------------------------------------------------- the class captions


def test_the_class_word_takes_the_trigger_words_place():
    assert class_caption("zkw, a woman in a red coat", ["zkw"], "woman") == "woman, a woman in a red coat"
    assert class_caption("A photo of ZKW smiling", ["zkw"], " person ") == "A photo of person smiling"
    assert class_caption("zkwx at the beach", ["zkw"], "person") is None  # whole words only
    assert class_caption("a dog on grass", ["zkw"], "person") is None
    assert class_caption("a dog on grass", [""], "person") is None
    # several concepts: each trigger word; the longer one first, so a trigger inside another stays whole
    assert class_caption("zkw dog next to zkw", ["zkw", "zkw dog"], "animal") == "animal next to animal"
    # nothing in the words is read as a pattern
    assert class_caption("c++ (v2) logo", ["c++ (v2)"], r"a \1 logo") == r"a \1 logo logo"


def _samples(*captions):
    from pathlib import Path

    return [SimpleNamespace(item=SimpleNamespace(path=Path(f"{i}.png"), caption=c)) for i, c in enumerate(captions)]


def _config(**overrides):
    return get_recipe("zimage-turbo").config_from_dict({"trigger_word": "zkw", "preserve_class": "person",
                                                         **overrides})


def test_it_stays_off_with_a_reason_when_it_cannot_work():
    notes = []
    samples = _samples("zkw, a man", "a tree")
    assert OutputPreservation.for_run(_config(preserve_class=""), samples, ["zkw"], notes.append) is None
    assert OutputPreservation.for_run(_config(preserve_weight=0), samples, ["zkw"], notes.append) is None
    assert notes == []  # off by choice: nothing to say
    assert OutputPreservation.for_run(_config(trigger_word=""), samples, [""], notes.append) is None
    assert "no caption holds a trigger word" in notes[-1]
    assert OutputPreservation.for_run(_config(preserve_class="ZKW"), samples, ["zkw"], notes.append) is None
    assert "'ZKW' is a trigger word of this job" in notes[-1]

    on = OutputPreservation.for_run(_config(preserve_weight=0.5), samples + samples[:1], ["zkw"], notes.append)
    assert on.texts == ["person, a man", None, "person, a man"] and on.captions() == ["person, a man"]
    assert on.weight == 0.5 and on.word == "person"
    assert "'person'" in notes[-1] and "on 1 image(s); 1 image(s) without a trigger word train as usual" in notes[-1]


def test_the_form_warns_about_settings_that_turn_it_off():
    assert _config().advice() == []
    (note,) = _config(trigger_word="").advice()
    assert note["field"] == "preserve_class" and "needs a trigger word" in note["message"]
    (note,) = _config(preserve_class="Zkw").advice()
    assert note["field"] == "preserve_class" and "is the trigger word itself" in note["message"]
    (note,) = _config(preserve_weight=0).advice()
    assert note["field"] == "preserve_weight"


def test_the_estimate_counts_the_extra_passes():
    from trainer.recipes.zimage_plan import PRESERVATION_FACTOR, estimate

    gpu = "NVIDIA H100 80GB HBM3"
    # only the steps change with the step count (compile off: a 1-step job would run uncompiled, the full one not)
    quiet = {"sample_every": 0, "eval_every": 0, "compile": False}
    plain, kept = _config(preserve_class="", **quiet), _config(**quiet)
    base = estimate(plain, 20, gpu, False)
    with_class = estimate(kept, 20, gpu, False)
    steps_plain = base.seconds - estimate(_config(preserve_class="", steps=1, **quiet), 20, gpu, False).seconds
    steps_kept = with_class.seconds - estimate(_config(steps=1, **quiet), 20, gpu, False).seconds
    assert steps_kept / steps_plain == pytest.approx(PRESERVATION_FACTOR, rel=0.01)
    assert with_class.memory_gb == base.memory_gb  # one pass's activations at a time
    unpreserved = estimate(_config(preserve_class="", trigger_word="", **quiet), 20, gpu, False).seconds
    assert estimate(_config(trigger_word="", **quiet), 20, gpu, False).seconds == unpreserved  # it would be off
    assert estimate(kept, 6, None, True).seconds > estimate(plain, 6, None, True).seconds


# ---------------------------------------------------------------- the loss on the tiny model

def _run(tmp_path, demo_paths, name, **overrides):
    from trainer.engine.progress import Progress
    from trainer.engine.training_run import TrainingRun
    from trainer.job_log import RunLog

    dataset = tmp_path / "datasets" / "toy"
    if not dataset.is_dir():
        make_dataset(dataset)
    cfg = tiny_config(steps=1000, save_every=1000, sample_every=0, eval_every=0, **overrides)
    job = tmp_path / "jobs" / name
    job.mkdir(parents=True)
    dev = torch.device("cpu")
    run = TrainingRun(cfg, dataset, job, demo_paths, TrainingControl(job), Progress(lambda e: None, cfg.steps, dev, 0),
                      dev, tmp_path / "cache", RunLog(job / "log.txt"))
    run.prepare()
    return run


def _fixed_inputs(loop, index: int):
    x0 = loop.data.latent(index).unsqueeze(0)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(index))
    return x0, noise, torch.tensor([0.6]), torch.ones(1)


@torch.no_grad()
def _drift(run, text_of) -> float:
    """Mean squared difference between the LoRA's and the base's prediction, over the training examples, for
    the caption `text_of(example index)`, at one fixed noise level and fixed noise."""
    loop, total = run.loop, 0.0
    for index in range(len(run.samples)):
        x0, noise, sigma, _ = _fixed_inputs(loop, index)
        x_t = loop.noised(x0, noise, sigma)
        embeds = [loop.data.embedding(text_of(index))]
        with lora_off(loop.transformer):
            base = loop.predict(x_t, sigma, embeds)
        total += float(((loop.predict(x_t, sigma, embeds) - base) ** 2).mean())
    return total / len(run.samples)


@pytest.mark.slow
def test_the_preservation_loss_is_zero_while_the_lora_is_zero_and_pulls_back_when_it_is_not(tmp_path, demo_paths):
    run = _run(tmp_path, demo_paths, "zero", preserve_class="shape")
    loop = run.loop
    try:
        x0, noise, sigma, weight = _fixed_inputs(loop, 0)
        # lora_B starts at zero: the LoRA changes nothing yet, so the two passes agree exactly
        assert float(loop.preservation.loss(loop, [0], x0, noise, sigma, weight).detach()) == 0.0
        assert loop.preservation.texts[0] == "shape shape number 0"
        assert "shape shape number 0" in run.cached.embeddings  # encoded once, with the other captions

        with torch.no_grad():
            for p in loop.params:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
        assert float(loop.preservation.loss(loop, [0], x0, noise, sigma, weight).detach()) > 0
        before = _drift(run, lambda i: loop.preservation.texts[i])
        optimizer = torch.optim.Adam(loop.params, lr=5e-3)
        for _ in range(20):  # the preservation loss alone takes the LoRA back toward the base on the class caption
            optimizer.zero_grad()
            x = torch.cat([_fixed_inputs(loop, i)[0] for i in range(3)])
            n = torch.cat([_fixed_inputs(loop, i)[1] for i in range(3)])
            loop.preservation.loss(loop, [0, 1, 2], x, n, torch.full((3,), 0.6), torch.ones(3)).backward()
            optimizer.step()
        assert _drift(run, lambda i: loop.preservation.texts[i]) < before / 2
        # an example without a class caption costs no pass at all
        loop.preservation.texts[0] = None
        assert loop.preservation.loss(loop, [0], x0, noise, sigma, weight) is None
    finally:
        run.close()


@pytest.mark.slow
def test_a_lora_trained_with_it_leaves_the_class_alone_and_still_learns_the_trigger(tmp_path, demo_paths):
    """Same seed, same steps: without preservation the class caption drifts with the LoRA as far as the trigger
    caption does (the leak); with it, far less, while the trigger caption still moves away from the base."""
    drifts = {}
    for name in ("plain", "kept"):
        run = _run(tmp_path, demo_paths, name, preserve_class="shape", learning_rate=1e-2)
        if name == "plain":  # the class captions are encoded (to measure them), the extra pass is left out
            run.loop.preservation = None
        try:
            for _ in range(80):
                run.run_step()
            run.flush(force=True)
            captions = [s.item.caption for s in run.samples]
            drifts[name] = (_drift(run, lambda i, c=captions: c[i].replace("zkw", "shape")),
                            _drift(run, lambda i, c=captions: c[i]))
        finally:
            run.close()
    (plain_class, plain_trigger), (kept_class, kept_trigger) = drifts["plain"], drifts["kept"]
    # measured: the class drifts 3.7 times less, the trigger keeps more than half its effect and moves twice
    # as far as the class (the tiny model's captions differ by one word)
    assert kept_class < plain_class / 3
    assert kept_trigger > plain_trigger / 3 and kept_trigger > 1.5 * kept_class


@pytest.mark.slow
def test_a_job_with_it_says_so_in_its_log_its_file_and_its_readme(tmp_path, demo_paths):
    from safetensors import safe_open

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "kept"
    cfg = tiny_config(steps=3, save_every=3, sample_every=0, eval_every=0, preserve_class="shape")
    result = train(cfg, dataset, job, demo_paths, TrainingControl(job), None, device="cpu",
                   cache_dir=tmp_path / "cache")
    log = (job / "log.txt").read_text()
    assert "Preserve the class: every step also keeps what the base model draws for 'shape'" in log
    assert "on 3 image(s)." in log
    with safe_open(result["lora_path"], "pt") as f:
        assert f.metadata()["preserved_class"] == "shape"
    assert "Class preserved:   shape" in (job / "lora" / "README.txt").read_text()
    assert _lora(result["lora_path"])

    plain = tmp_path / "jobs" / "plain"
    result = train(tiny_config(steps=1, save_every=1, sample_every=0, eval_every=0), dataset, plain, demo_paths,
                   TrainingControl(plain), None, device="cpu", cache_dir=tmp_path / "cache")
    with safe_open(result["lora_path"], "pt") as f:
        assert "preserved_class" not in f.metadata()
    assert "Class preserved" not in (plain / "lora" / "README.txt").read_text()


@pytest.mark.slow
def test_running_out_of_memory_in_the_extra_pass_retries_the_step_and_trains_the_same_lora(tmp_path, demo_paths,
                                                                                          monkeypatch):
    """The step's first pass has already left its gradients when the extra pass runs out of memory: the retry
    starts the step from nothing, so the LoRA is the one of a run that never ran out."""
    from tests.test_engine_train import _losses

    dataset = make_dataset(tmp_path / "datasets" / "toy", count=2)
    cfg = tiny_config(steps=6, save_every=3, preserve_class="shape")
    clean = train(cfg, dataset, tmp_path / "clean", demo_paths, None, None, device="cpu", cache_dir=tmp_path / "c")

    original, raised = OutputPreservation.loss, []

    def loss(self, loop, *args):
        if loop.state.step + 1 == 2 and not raised:
            raised.append(2)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, loop, *args)

    monkeypatch.setattr(OutputPreservation, "loss", loss)
    recovered = train(cfg, dataset, tmp_path / "oom", demo_paths, None, None, device="cpu", cache_dir=tmp_path / "c")
    assert raised == [2] and "Out of memory at step 2" in (tmp_path / "oom" / "log.txt").read_text()
    assert _losses(tmp_path / "oom") == _losses(tmp_path / "clean")
    a, b = _lora(clean["lora_path"]), _lora(recovered["lora_path"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
