"""End to end on the tiny pipeline: the speed options (and ema, mirrored images, preserve_class, prodigy) keep exact
resume bit-exact (on and off), say how they fall back on the CPU, and report the step-time split; previews
come as base / LoRA / LoRA-without-trigger triples with the base rendered once per job; the finished job leaves the
proof grid and README.txt beside the LoRA."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_engine_train import Crash, CrashAfter, StopAfter, _lora, _losses, make_dataset, tiny_config
from trainer.engine import TrainingControl, train
from trainer.engine.sampling import Sampler

pytestmark = pytest.mark.slow

SPEED_ON = {"gradient_checkpointing": "on", "compile": True, "attention_backend": "flash", "log_every": 3,
            "quantize_base": "float8", "float8_matmuls": True}
SPEED_OFF = {"gradient_checkpointing": "off", "compile": False, "attention_backend": "default", "log_every": 1,
             "quantize_base": "none", "float8_matmuls": False}
SELECTIVE = {**SPEED_OFF, "gradient_checkpointing": "selective", "log_every": 3}
MIRRORED = {**SPEED_OFF, "flip_horizontal": True}
AVERAGED = {**SPEED_OFF, "ema_decay": 0.9, "log_every": 3}
PRESERVED = {**SPEED_OFF, "preserve_class": "shape", "log_every": 3}
PRODIGY = {**SPEED_OFF, "optimizer": "prodigy", "learning_rate": 1.0, "warmup_steps": 2, "log_every": 3}
LOKR = {**SELECTIVE, "network": "lokr", "lokr_factor": 4, "ema_decay": 0.9}


@pytest.mark.parametrize("options", [SPEED_ON, SELECTIVE, SPEED_OFF, MIRRORED, AVERAGED, PRESERVED, PRODIGY, LOKR],
                         ids=["options-on", "selective", "options-off", "mirrored", "ema", "preserved", "prodigy",
                              "lokr"])
def test_exact_resume_with_the_speed_options(tmp_path, demo_paths, options):
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    cfg = tiny_config(steps=8, save_every=4, keep_last=3, caption_dropout=0.3, timestep_sampling="weighted",
                      batch_size=2, resolutions=[64, 96], **options)
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "cache"}
    straight = tmp_path / "jobs" / "straight"
    reference = train(cfg, dataset, straight, demo_paths, TrainingControl(straight), None, **kwargs)

    stopped = tmp_path / "jobs" / "stopped"  # stopped after 5 steps: mid-way through a log_every=3 interval
    assert train(cfg, dataset, stopped, demo_paths, StopAfter(stopped, 5), None, **kwargs)["steps"] == 5
    resumed = train(cfg, dataset, stopped, demo_paths, TrainingControl(stopped), None, **kwargs)

    crashed = tmp_path / "jobs" / "crashed"  # killed after 7 steps: steps 5-7 are redone from step 4
    with pytest.raises(Crash):
        train(cfg, dataset, crashed, demo_paths, CrashAfter(crashed, 7), None, **kwargs)
    again = train(cfg, dataset, crashed, demo_paths, TrainingControl(crashed), None, **kwargs)
    assert (resumed["resumed_from"], again["resumed_from"]) == (5, 4)

    expected = _lora(reference["lora_path"])
    for job, result in ((stopped, resumed), (crashed, again)):
        assert _losses(job) == _losses(straight) and [s for s, _ in _losses(job)] == list(range(1, 9))
        got = _lora(result["lora_path"])
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    log = (straight / "log.txt").read_text()
    if options is SPEED_ON:
        assert "quantize_base=float8 is ignored on the CPU." in log
        assert "torch.compile is off: compiled blocks are built for CUDA GPUs" in log
        assert "attention_backend=flash applies to CUDA GPUs" in log
        assert "Gradient checkpointing: 2 of 2 blocks recompute their activations" in log
    if options is SELECTIVE:
        assert "0 of 2 blocks recompute their activations, 2 recompute only element-wise work" in log
    if options is MIRRORED:  # every mirror image is an example of its own, with its own cached latent
        examples = re.search(r"Dataset: 3 image\(s\), (\d+) training example\(s\), each also mirrored in", log)
        assert examples and f"(VAE encoder calls {examples.group(1)}," in log
    if options is LOKR:
        assert "LoKr factor 4 on all layers" in log and all(".lokr_w" in k for k in expected)
    if options is not SPEED_OFF:
        # the same arithmetic with every option off: checkpointing and deferred loss reads change nothing
        off = tmp_path / "jobs" / "off"
        plain = train(tiny_config(**{**cfg.to_dict(), **SPEED_OFF}), dataset, off, demo_paths, None, None, **kwargs)
        assert _losses(off) == _losses(straight)
        assert all(torch.equal(_lora(plain["lora_path"])[k], expected[k]) for k in expected)


def test_metrics_carry_the_step_time_split_and_progress_the_measured_rate(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    events = []
    job = tmp_path / "job"
    train(tiny_config(steps=6, log_every=2), dataset, job, demo_paths, None, events.append, device="cpu",
          cache_dir=tmp_path / "cache")
    lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    timed = [line for line in lines if "timing" in line]
    assert [line["step"] for line in timed] == [1, 2, 4, 6]  # the first step, then every log_every
    assert all(set(line["timing"]) >= {"data_ms", "forward_ms", "backward_ms", "optimizer_ms", "step_ms"}
               for line in timed)
    training = [e for e in events if e["phase"] == "training"]
    assert training and training[-1]["step_time"]["steps"] >= 1
    assert any(e["it_per_s"] and e["eta_s"] is not None for e in training)


def _triple_config(**overrides):
    base = {"steps": 6, "sample_every": 3, "learning_rate": 5e-2, "trigger_word": "zkw",
            "sample_prompts": ["[trigger] a yellow square", "a red circle, [trigger] style", "a plain landscape"]}
    return tiny_config(**{**base, **overrides})


def test_the_base_model_previews_come_before_the_first_step(tmp_path, demo_paths):
    from trainer import library

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "early"
    events = []
    train(_triple_config(), dataset, job, demo_paths, StopAfter(job, 1), events.append, device="cpu",
          cache_dir=tmp_path / "c")
    log = (job / "log.txt").read_text()
    assert "Base model previews saved: samples/base (3 images)." in log
    assert log.index("Base model previews saved") < log.index("Stopped at step 1")
    assert any(e["message"] == "Rendering the base model's previews" and e["step"] == 0 for e in events)
    groups = library.samples(job)  # one step in, long before the first preview step (3)
    assert [(g["step"], g.get("base_only")) for g in groups] == [(0, True)]
    assert groups[0]["images"] == ["samples/base/0.png", "samples/base/1.png", "samples/base/2.png"]
    assert groups[0]["prompts"][0] == "zkw a yellow square"


def test_previews_come_as_base_lora_and_no_trigger_triples(tmp_path, demo_paths, monkeypatch):
    renders = []
    original = Sampler._render

    def counting(self, pipe, transformer, prompt, kind, text=None):
        renders.append((kind, prompt.text if text is None else text))
        return original(self, pipe, transformer, prompt, kind, text)

    monkeypatch.setattr(Sampler, "_render", counting)
    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "triples"
    cfg = _triple_config()
    result = train(cfg, dataset, job, demo_paths, StopAfter(job, 4), None, device="cpu", cache_dir=tmp_path / "c")
    assert result["stopped"]
    train(cfg, dataset, job, demo_paths, TrainingControl(job), None, device="cpu", cache_dir=tmp_path / "c")

    # sample steps 3 and 6, across a stop and a resume: the base was rendered once per prompt
    kinds = [k for k, _ in renders]
    assert kinds.count("base") == 3 and kinds.count("lora") == 6 and kinds.count("lora_no_trigger") == 6
    assert ("lora_no_trigger", "a plain landscape") in renders
    assert ("lora_no_trigger", "a red circle, style") in renders
    samples = job / "samples"
    assert sorted(p.name for p in (samples / "base").iterdir()) == ["0.png", "1.png", "2.png", "prompts.json"]
    step = samples / "step_000006"
    assert {p.name for p in step.iterdir()} == {"0.png", "1.png", "2.png", "0_notrigger.png", "1_notrigger.png",
                                               "2_notrigger.png", "prompts.json"}
    entry = json.loads((step / "prompts.json").read_text())["prompts"][0]
    assert entry["prompt"] == "zkw a yellow square" and entry["no_trigger_prompt"] == "a yellow square"
    assert entry["lora"] == "0.png" and entry["lora_no_trigger"] == "0_notrigger.png"
    assert entry["base"] == "../base/0.png" and len(entry["base_key"]) == 16

    base = np.asarray(Image.open(samples / "base" / "0.png"), dtype=np.float32)
    lora = np.asarray(Image.open(step / "0.png"), dtype=np.float32)
    assert np.abs(base - lora).mean() > 0.5  # six steps at a high learning rate changed the image

    # the proof beside the LoRA: grid (3 rows x 3 columns), README and the ComfyUI workflow
    lora_dir = job / "lora"
    assert {p.name for p in lora_dir.iterdir()} == {"toy.safetensors", "proof_grid.png", "README.txt",
                                                    "comfyui_workflow.json"}
    graph = json.loads((lora_dir / "comfyui_workflow.json").read_text())
    assert_comfyui_graph(graph)
    lora_node = next(node for node in graph.values() if node["class_type"] == "LoraLoaderModelOnly")
    assert lora_node["inputs"]["lora_name"] == "toy.safetensors" and lora_node["inputs"]["strength_model"] == 1.0
    prompt = next(node for node in graph.values() if node["class_type"] == "CLIPTextEncode")["inputs"]["text"]
    sampler = next(node for node in graph.values() if node["class_type"] == "KSampler")["inputs"]
    assert prompt == "zkw a yellow square" and sampler["seed"] == 42 and sampler["steps"] == 2 and sampler["cfg"] == 1.0
    with Image.open(lora_dir / "proof_grid.png") as grid:
        assert grid.width > 3 * 320 and grid.height > 3 * 320
    readme = (lora_dir / "README.txt").read_text()
    for text in ("Trigger word:      zkw", "Steps:             6", "Rank / alpha:      4 / 4",
                 "Tongyi-MAI/Z-Image-Turbo", "Suggested strength: 1.0", "ComfyUI/models/loras", "LoraLoaderModelOnly",
                 "Drop comfyui_workflow.json onto ComfyUI", "models/diffusion_models/z_image_turbo_bf16.safetensors",
                 "Hardware:          CPU"):  # what it trained on: a GPU's name on a pod
        assert text in readme


# What each node of ComfyUI's API format takes (its INPUT_TYPES) and gives (RETURN_TYPES), for the nodes
# the workflow uses: every input is given, and every link points at an output of the right type.
COMFY_NODES = {
    "UNETLoader": ({"unet_name": str, "weight_dtype": str}, ["MODEL"]),
    "CLIPLoader": ({"clip_name": str, "type": str}, ["CLIP"]),  # its optional device input left at its default
    "VAELoader": ({"vae_name": str}, ["VAE"]),
    "LoraLoaderModelOnly": ({"model": "MODEL", "lora_name": str, "strength_model": float}, ["MODEL"]),
    "ModelSamplingAuraFlow": ({"model": "MODEL", "shift": float}, ["MODEL"]),
    "CLIPTextEncode": ({"text": str, "clip": "CLIP"}, ["CONDITIONING"]),
    "ConditioningZeroOut": ({"conditioning": "CONDITIONING"}, ["CONDITIONING"]),
    "EmptySD3LatentImage": ({"width": int, "height": int, "batch_size": int}, ["LATENT"]),
    "KSampler": ({"model": "MODEL", "seed": int, "steps": int, "cfg": float, "sampler_name": str, "scheduler": str,
                  "positive": "CONDITIONING", "negative": "CONDITIONING", "latent_image": "LATENT", "denoise": float},
                 ["LATENT"]),
    "VAEDecode": ({"samples": "LATENT", "vae": "VAE"}, ["IMAGE"]),
    "SaveImage": ({"images": "IMAGE", "filename_prefix": str}, []),
}


def assert_comfyui_graph(graph: dict) -> None:
    for node_id, node in graph.items():
        inputs, _outputs = COMFY_NODES[node["class_type"]]
        assert set(node["inputs"]) == set(inputs), node_id
        for name, kind in inputs.items():
            value = node["inputs"][name]
            if isinstance(kind, str):  # a link: [node id, output index] to an output of that type
                source, index = value
                assert COMFY_NODES[graph[source]["class_type"]][1][index] == kind, (node_id, name)
            else:
                assert isinstance(value, kind) or (kind is float and isinstance(value, int)), (node_id, name)
    assert sum(node["class_type"] == "SaveImage" for node in graph.values()) == 1


def test_no_trigger_column_is_left_out_without_a_trigger_word(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    job = tmp_path / "job"
    train(_triple_config(trigger_word="", steps=2, sample_every=0), dataset, job, demo_paths, None, None,
          device="cpu", cache_dir=tmp_path / "c")
    step = job / "samples" / "step_000002"  # previews were off: the final step is rendered for the proof
    assert {p.name for p in step.iterdir()} == {"0.png", "1.png", "2.png", "prompts.json"}
    prompts = json.loads((step / "prompts.json").read_text())["prompts"]
    assert [p["lora_no_trigger"] for p in prompts] == [None, None, None]
    assert "no trigger word" in (job / "lora" / "README.txt").read_text()
    assert (job / "lora" / "proof_grid.png").is_file()


def test_a_changed_preview_setting_renders_the_base_again(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    job = tmp_path / "job"
    kwargs = {"device": "cpu", "cache_dir": tmp_path / "c"}
    train(_triple_config(steps=2, sample_every=2), dataset, job, demo_paths, None, None, **kwargs)
    first = json.loads((job / "samples" / "base" / "prompts.json").read_text())["prompts"]
    train(_triple_config(steps=4, sample_every=2, sample_steps=3), dataset, job, demo_paths, None, None, **kwargs)
    second = json.loads((job / "samples" / "base" / "prompts.json").read_text())["prompts"]
    assert [p["key"] for p in first] != [p["key"] for p in second]
    step4 = json.loads((job / "samples" / "step_000004" / "prompts.json").read_text())["prompts"]
    assert [p["base_key"] for p in step4] == [p["key"] for p in second]


def test_with_ema_decay_the_lora_written_is_the_average_and_training_goes_on_with_its_own_weights(tmp_path,
                                                                                                   demo_paths):
    from safetensors.torch import load_file

    from trainer.engine import model as zmodel

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    cfg = tiny_config(steps=6, save_every=3, ema_decay=0.8, save_dtype="fp32", learning_rate=1e-2)
    job = tmp_path / "jobs" / "ema"
    result = train(cfg, dataset, job, demo_paths, TrainingControl(job), None, device="cpu", cache_dir=tmp_path / "c")
    state = torch.load(job / "checkpoints" / "step_000006" / "state.pt", weights_only=False)
    names = list(state["lora"])
    written = load_file(str(result["lora_path"]))
    for name, own, average in zip(names, state["lora"].values(), state["ema"], strict=True):
        key = zmodel.COMFY_PREFIX + name.replace(".default", "")
        if key not in written:
            continue
        scale = 1.0 if ".lora_A." in name else cfg.lora_alpha / cfg.rank
        assert torch.allclose(written[key], average * scale)  # the average, not the last step's weights
        if ".lora_B." in name:
            assert not torch.allclose(own, average)
    assert written.keys() == load_file(str(job / "checkpoints" / "step_000006" / "lora.safetensors")).keys()


def test_the_moving_average_warms_up_and_gives_the_weights_back():
    from trainer.engine.ema import LoraEMA, decay_at

    param = torch.nn.Parameter(torch.zeros(3))
    ema = LoraEMA([param], 0.9)
    with torch.no_grad():
        param.fill_(1.0)
    ema.update(1)  # warm-up: decay (1 + 1) / (10 + 1)
    assert torch.allclose(ema.shadow[0], torch.full((3,), 1 - decay_at(0.9, 1)))
    assert decay_at(0.9, 1000) == 0.9
    with ema.applied():
        assert torch.equal(param.detach(), ema.shadow[0])
    assert torch.equal(param.detach(), torch.ones(3))
    saved = ema.state_dict()
    other = LoraEMA([param], 0.9)
    other.load_state_dict(saved)
    assert torch.equal(other.shadow[0], ema.shadow[0])
    with pytest.raises(ValueError):
        other.load_state_dict([torch.zeros(4)])
