"""An ai-toolkit config pasted into the new job form: its settings become this studio's (valid for the recipe as they
come), what the studio does its own way is said with the reason, a config of another model or an out-of-range value
warns, and the studio's own configs pass through untouched."""

from __future__ import annotations

import json

import pytest
import yaml

from trainer.aitoolkit_config import process_of, translate
from trainer.recipes import get_recipe

# ai-toolkit's example for Z-Image-Turbo (config/examples/train_lora_zimage_turbo_32gb.yaml), as people start from it
ZIMAGE_TURBO = """\
---
job: extension
config:
  name: "my_zimage_turbo_character_lora_v1"
  process:
    - type: 'diffusion_trainer'
      training_folder: "output"
      device: cuda:0
      trigger_word: "p3rs0n"
      network:
        type: "lora"
        linear: 128
        linear_alpha: 128
      save:
        dtype: bf16
        save_every: 500
        max_step_saves_to_keep: 6
        save_format: safetensors
      datasets:
        - folder_path: "/path/to/images/folder"
          caption_ext: "txt"
          caption_dropout_rate: 0.05
          cache_latents_to_disk: true
          resolution: [ 512, 768, 1024 ]
      train:
        batch_size: 2
        gradient_accumulation: 1
        steps: 3000
        train_unet: true
        train_text_encoder: false
        gradient_checkpointing: true
        noise_scheduler: "flowmatch"
        timestep_type: "weighted"
        content_or_style: "balanced"
        loss_type: "mse"
        dtype: bf16
        optimizer: "prodigy"
        lr: 1.0
        optimizer_params:
          weight_decay: 0.01
        lr_scheduler: "constant"
        diff_output_preservation: true
        diff_output_preservation_multiplier: 1.0
        diff_output_preservation_class: "person"
        ema_config:
          use_ema: true
          ema_decay: 0.99
        disable_sampling: false
      model:
        name_or_path: "Tongyi-MAI/Z-Image-Turbo"
        arch: "zimage"
        assistant_lora_path: "ostris/zimage_turbo_training_adapter/zimage_turbo_training_adapter_v2.safetensors"
        quantize: true
        qtype: "qfloat8"
        low_vram: false
      sample:
        sampler: "flowmatch"
        sample_every: 250
        width: 1024
        height: 1024
        samples:
          - prompt: "[trigger], studio portrait, soft lighting"
          - prompt: "[trigger] on a beach, golden hour"
            width: 832
            height: 1216
            seed: 7
        neg: "blurry"
        seed: 42
        guidance_scale: 1
        sample_steps: 8
meta:
  name: "[name]"
  version: '1.0'
"""


def test_the_zimage_turbo_example_becomes_a_valid_job():
    translated = translate(yaml.safe_load(ZIMAGE_TURBO))
    config = translated.config
    assert (config["name"], config["trigger_word"], config["network"], config["rank"]) == (
        "my_zimage_turbo_character_lora_v1", "p3rs0n", "lora", 128)
    assert config["alpha"] is None  # alpha = rank: scale 1, the studio's empty alpha
    assert (config["steps"], config["batch_size"], config["learning_rate"], config["optimizer"]) == (3000, 2, 1.0,
                                                                                                     "prodigy")
    assert (config["weight_decay"], config["lr_schedule"], config["timestep_sampling"]) == (0.01, "constant",
                                                                                            "weighted")
    assert (config["preserve_class"], config["preserve_weight"], config["ema_decay"]) == ("person", 1.0, 0.99)
    assert (config["quantize_base"], config["gradient_checkpointing"], config["mixed_precision"]) == ("float8", "auto",
                                                                                                       "bf16")
    assert (config["save_dtype"], config["save_every"], config["keep_last"]) == ("bf16", 500, 6)
    assert (config["caption_dropout"], config["resolutions"]) == (0.05, [512, 768, 1024])
    # its guidance_scale 1 means no guidance there as in ComfyUI; the pipeline would guide at 1, twice the time
    assert (config["sample_every"], config["sample_steps"], config["guidance_scale"], config["seed"]) == (250, 8, 0, 42)
    assert any(note.startswith("guidance_scale 1: taken as 0, no guidance") for note in translated.own_way)
    # without walk_seed every preview of ai-toolkit's has the one seed; a sample's own size and seed come along
    assert config["sample_prompts"] == ["[trigger], studio portrait, soft lighting --d 42 --n blurry",
                                        "[trigger] on a beach, golden hour --w 832 --h 1216 --d 7 --n blurry"]
    parsed = get_recipe("zimage-turbo").config_from_dict(config)  # valid as it comes
    assert parsed.to_dict()["rank"] == 128
    assert "rank 128" in translated.taken and "alpha = rank" in translated.taken
    notes = " ".join(translated.own_way)
    assert "assistant_lora_path: the studio merges ostris' training adapter" in notes
    assert "folder_path: pick the dataset in the form" in notes and "cache_latents_to_disk" in notes
    assert "content_or_style" in notes and "loss_type" not in notes  # mse is what the studio does
    assert "low_vram" not in notes and "train_text_encoder" not in notes  # off in the config: nothing to say
    assert translated.warnings == []


def test_the_web_ui_s_json_and_a_bare_process_read_alike():
    doc = yaml.safe_load(ZIMAGE_TURBO)
    whole = translate(json.loads(json.dumps(doc))).config
    process = doc["config"]["process"][0]
    bare = translate(process).config
    assert bare == {key: value for key, value in whole.items() if key != "name"}  # a process has no job name
    sections = {key: process[key] for key in ("network", "train")}
    assert translate(sections).config["rank"] == 128
    assert process_of({"steps": 3000, "rank": 32, "network": "lora"}) is None  # the studio's own config
    assert translate({"trigger_word": "x", "train": {"steps": 5}}) is None  # one section alone is not enough
    assert translate(["a", "list"]) is None


def test_a_lokr_config_takes_the_nearest_factor_and_says_so():
    doc = {"network": {"type": "lokr", "lokr_factor": 10, "lokr_full_rank": False, "linear": 1000000},
           "train": {"steps": "2000", "lr": "1e-4", "optimizer": "adamw8bit", "lr_scheduler": "constant_with_warmup",
                     "lr_scheduler_params": {"num_warmup_steps": 100}, "ema_config": {"use_ema": False}}}
    translated = translate(doc)
    config = translated.config
    assert (config["network"], config["lokr_factor"]) == ("lokr", 8) and "rank" not in config
    assert (config["steps"], config["learning_rate"], config["optimizer"]) == (2000, 1e-4, "adamw8bit")
    assert (config["lr_schedule"], config["warmup_steps"], config["ema_decay"]) == ("constant", 100, 0.0)
    assert any("lokr_factor 10" in warning and "8 was taken" in warning for warning in translated.warnings)
    assert any(note.startswith("lokr_full_rank") for note in translated.own_way)
    get_recipe("zimage-turbo").config_from_dict(config)


@pytest.mark.parametrize("model, words", [
    ({"arch": "flux", "name_or_path": "black-forest-labs/FLUX.1-dev"}, "trains flux, not Z-Image-Turbo"),
    ({"name_or_path": "Qwen/Qwen-Image"}, "trains Qwen/Qwen-Image, not Z-Image-Turbo"),
    ({"arch": "zimage", "name_or_path": "Tongyi-MAI/Z-Image"}, "Z-Image (the base model)"),
])
def test_a_config_of_another_model_warns(model, words):
    translated = translate({"model": model, "network": {"type": "lora", "linear": 16}})
    assert translated.config["rank"] == 16
    assert any(words in warning for warning in translated.warnings), translated.warnings


def test_what_the_studio_does_not_have_keeps_the_form_s_value_with_the_reason():
    doc = {"network": {"type": "loha", "linear": 8}, "model": {"arch": "zimage:turbo", "quantize": True,
                                                               "qtype": "uint4"},
           "train": {"optimizer": "lion", "lr_scheduler": "polynomial", "timestep_type": "lognorm_blend",
                     "noise_offset": 0.05, "loss_type": "l1", "optimizer_params": {"betas": [0.9, 0.99]}},
           "datasets": [{"resolution": 1000, "flip_x": True, "is_reg": False}, {"resolution": 512}]}
    translated = translate(doc)
    config = translated.config
    assert "optimizer" not in config and "lr_schedule" not in config and "timestep_sampling" not in config
    assert "network" not in config and config["rank"] == 8
    assert (config["quantize_base"], config["resolutions"], config["flip_horizontal"]) == ("float8", [1008], True)
    warnings = " ".join(translated.warnings)
    for words in ("network type loha", "optimizer lion", "lr_scheduler polynomial", "timestep_type lognorm_blend",
                  "qtype uint4", "resolution [1000]"):
        assert words in warnings
    notes = " ".join(translated.own_way)
    for words in ("noise_offset", "loss_type l1", "optimizer_params betas", "2 datasets: pick them in the form"):
        assert words in notes
    assert "is_reg" not in notes


@pytest.mark.parametrize("text", ["learning_rate: .inf", "learning_rate: .nan", "x: !!binary aGVsbG8=",
                                  "when: 2026-12-03"])
def test_the_parse_endpoint_refuses_values_no_setting_takes(trainer_client, text):
    answer = trainer_client.post("/api/config/parse", json={"text": text})
    assert answer.status_code == 422 and "holds a value no setting takes" in answer.get_json()["error"]


def test_the_form_s_parse_endpoint_translates_an_ai_toolkit_config(trainer_client):
    answer = trainer_client.post("/api/config/parse", json={"text": ZIMAGE_TURBO})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["from"] == "ai-toolkit" and body["config"]["rank"] == 128 and body["warnings"] == []
    assert "steps 3000" in body["taken"] and any("folder_path" in note for note in body["own_way"])
    as_json = trainer_client.post("/api/config/parse", json={"text": json.dumps(yaml.safe_load(ZIMAGE_TURBO))})
    assert as_json.get_json()["config"] == body["config"]
    own = trainer_client.post("/api/config/parse", json={"text": "steps: 10\nrank: 8\n"}).get_json()
    assert own == {"config": {"steps": 10, "rank": 8}}  # the studio's own settings: as they are


def test_ai_toolkit_s_own_defaults_and_rules_are_kept():
    """What ai-toolkit does with what a config leaves out: alpha 1 without linear_alpha, 1000 warm-up steps with
    constant_with_warmup, EMA decay 0.999, Prodigy's learning rate raised to 1; the training seed over the sample's."""
    translated = translate({
        "network": {"type": "lora", "linear": 16},
        "train": {"optimizer": "prodigy", "lr": 1e-4, "lr_scheduler": "constant_with_warmup",
                  "ema_config": {"use_ema": True}},
        "training_seed": 5,
        "sample": {"seed": 42, "walk_seed": True, "neg": False, "samples": [
            {"prompt": "[trigger] at dusk", "guidance_scale": 2.5, "sample_steps": 12, "network_multiplier": 0.8,
             "neg": "text, watermark"}, {"prompt": "[trigger] in snow --d 3"}, {"prompt": "  "}]},
        "model": {"arch": "zimage:turbo", "compile": True}})
    config = translated.config
    assert (config["rank"], config["alpha"], config["warmup_steps"], config["ema_decay"]) == (16, 1.0, 1000, 0.999)
    assert (config["learning_rate"], config["seed"], config["compile"]) == (1.0, 5, True)
    assert any(note.startswith("lr 0.0001 with Prodigy: 1.0") for note in translated.own_way)
    assert config["sample_prompts"] == ["[trigger] at dusk --l 2.5 --s 12 --m 0.8 --n text, watermark",
                                        "[trigger] in snow --d 3"]  # walked seeds are the studio's own way
    assert translated.warnings == []
    get_recipe("zimage-turbo").config_from_dict(config)
    assert translate({"datasets": [{"trigger_word": "sks"}], "train": {}}).config["trigger_word"] == "sks"
    de_turbo = translate({"model": {"arch": "zimage:deturbo", "name_or_path": "ostris/Z-Image-De-Turbo"},
                          "train": {"steps": 10}})
    assert any("De-Turbo" in warning for warning in de_turbo.warnings)


@pytest.mark.parametrize("doc", [
    {"network": {"type": 5, "linear": "abc", "linear_alpha": float("nan")}, "train": [], "save": "x"},
    {"network": {"type": "lora", "linear": "1e400"}, "train": {"lr": "nan", "steps": float("inf")}},
    {"datasets": "folder", "sample": {"samples": "abc", "width": "wide", "seed": [1]}, "model": {"arch": 7}},
    {"config": {"process": [{"network": None, "train": {"ema_config": "on", "optimizer_params": [1]}}]}},
    {"datasets": [{"resolution": ["a", -5, 0, None]}], "sample": {"samples": [None, 3, {"prompt": 5}]},
     "train": {"diff_output_preservation": True}},
])
def test_a_hostile_config_is_read_without_failing(doc):
    translated = translate(doc)
    assert translated is not None
    json.dumps(translated.config)  # plain values only
    assert all(isinstance(v, str) for v in translated.taken + translated.own_way + translated.warnings)
