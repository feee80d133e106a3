"""The recipe registry and the zimage-turbo config: defaults, validation, JSON round trip, schema, form."""

from __future__ import annotations

import json

import pytest

from trainer.recipes import ConfigError, get_recipe, list_recipes


@pytest.fixture
def recipe():
    return get_recipe("zimage-turbo")


def _errors(recipe, data) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        recipe.config_from_dict(data)
    return {e["field"]: e["message"] for e in info.value.errors}


def test_registry_lists_zimage_turbo():
    assert [r.name for r in list_recipes()] == ["zimage-turbo"]
    with pytest.raises(ConfigError) as info:
        get_recipe("flux-dev")
    assert info.value.errors[0]["field"] == "recipe"


def test_defaults_match_the_zimage_turbo_preset(recipe):
    cfg = recipe.default_config()
    assert cfg.rank == 32 and cfg.alpha is None and cfg.lora_alpha == 32.0
    assert cfg.learning_rate == 1e-4
    assert cfg.optimizer == "auto" and cfg.weight_decay == 1e-4
    assert cfg.lr_schedule == "constant" and cfg.warmup_steps == 0
    assert cfg.max_grad_norm == 1.0 and cfg.batch_size == 1 and cfg.gradient_accumulation == 1
    assert cfg.steps == 3000 and cfg.mixed_precision == "bf16" and cfg.gradient_checkpointing == "auto"
    assert cfg.resolutions == [512, 768, 1024]
    assert cfg.caption_dropout == 0.05 and cfg.shift == 3.0 and cfg.timestep_sampling == "weighted"
    assert (cfg.save_every, cfg.keep_last, cfg.sample_every) == (250, 4, 250)
    assert (cfg.sample_width, cfg.sample_height, cfg.sample_steps, cfg.guidance_scale) == (1024, 1024, 9, 0.0)
    assert cfg.seed == 42 and cfg.sample_prompts and cfg.quantize_base == "none"
    assert cfg.missing_captions == "default_caption"
    assert recipe.config_from_dict({"rank": 16}).lora_alpha == 16.0
    assert recipe.config_from_dict({"rank": 16, "alpha": 8}).lora_alpha == 8.0


def test_json_round_trip(recipe):
    cfg = recipe.config_from_dict({"name": "cat", "trigger_word": "zkw", "rank": 8, "learning_rate": 3e-4,
                                   "resolutions": [512, 1024], "sample_prompts": ["[trigger] on a sofa"]})
    text = json.dumps(cfg.to_dict())
    again = recipe.config_from_dict(json.loads(text))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    # integers are accepted where a number is expected and stored as floats
    assert recipe.config_from_dict({"learning_rate": 1}).learning_rate == 1.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rank": 0}, "rank"),
        ({"learning_rate": -1e-4}, "learning_rate"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"steps": 0}, "steps"),
        ({"resolutions": [500]}, "resolutions"),
        ({"resolutions": []}, "resolutions"),
        ({"sample_width": 1000}, "sample_width"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"timestep_sampling": "logit"}, "timestep_sampling"),
        ({"quantize_base": "nf4"}, "quantize_base"),
        ({"missing_captions": "skip"}, "missing_captions"),
        ({"caption_dropout": 1.5}, "caption_dropout"),
        ({"rank": "32"}, "rank"),
        ({"gradient_checkpointing": "yes"}, "gradient_checkpointing"),
        ({"resolutions": "512"}, "resolutions"),
        ({"name": "../etc"}, "name"),
        ({"sample_prompts": ["  "]}, "sample_prompts"),
    ],
)
def test_bad_values_name_the_field(recipe, data, field):
    errors = _errors(recipe, data)
    assert field in errors
    assert errors[field].endswith(".")


def test_a_warm_up_longer_than_the_run_is_a_warning_not_an_error(recipe):
    config = recipe.config_from_dict({"warmup_steps": 10, "steps": 5})
    (note,) = config.advice()
    assert note["field"] == "warmup_steps" and "never reaches" in note["message"]
    assert recipe.config_from_dict({"warmup_steps": 4, "steps": 5}).advice() == []


def test_resolution_error_says_multiple_of_16(recipe):
    assert "multiple of 16" in _errors(recipe, {"resolutions": [512, 500]})["resolutions"]


def test_unknown_keys_are_errors_together_with_field_errors(recipe):
    errors = _errors(recipe, {"lora_rank": 16, "steps": 0})
    assert set(errors) == {"lora_rank", "steps"}
    with pytest.raises(ConfigError):
        recipe.config_from_dict(["not", "a", "dict"])


def test_form_fields_cover_every_setting(recipe):
    fields = recipe.form_fields()
    names = [f["name"] for f in fields]
    assert names == list(recipe.defaults())
    for f in fields:
        assert {"name", "type", "default", "help", "section"} <= set(f)
        assert f["section"] in ("basic", "advanced") and f["help"]
    by_name = {f["name"]: f for f in fields}
    assert by_name["rank"]["type"] == "integer" and by_name["rank"]["min"] == 1
    assert by_name["rank"]["section"] == "basic"
    assert by_name["optimizer"]["choices"] == ["auto", "adamw8bit", "adamw", "prodigy"]
    assert by_name["resolutions"]["type"] == "array" and by_name["resolutions"]["items"] == "integer"
    assert by_name["alpha"]["nullable"] is True
    assert by_name["learning_rate"]["type"] == "number"


def test_json_schema(recipe):
    schema = recipe.json_schema()
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    props = schema["properties"]
    assert set(props) == set(recipe.defaults())
    assert props["timestep_sampling"]["enum"] == ["weighted", "shift", "sigmoid", "uniform"]
    assert props["alpha"]["type"] == ["number", "null"]
    assert props["resolutions"]["items"]["type"] == "integer"
    assert props["learning_rate"]["exclusiveMinimum"] == 0.0
    json.dumps(schema)


def test_presets_are_valid_configs(recipe):
    assert set(recipe.presets) == {"16gb", "24gb", "48gb"}
    configs = {name: recipe.config_from_dict(overrides) for name, overrides in recipe.presets.items()}
    assert configs["16gb"].quantize_base != "none" and max(configs["16gb"].resolutions) <= 768
    assert configs["24gb"].quantize_base in ("float8", "int8") and 1024 in configs["24gb"].resolutions
    assert configs["48gb"].quantize_base == "none"
    for overrides in recipe.presets.values():
        assert {"quantize_base", "resolutions", "gradient_checkpointing"} <= set(overrides)
    json.dumps(recipe.describe())


def test_speed_options_have_defaults_choices_and_legacy_booleans(recipe):
    cfg = recipe.default_config()
    assert (cfg.compile, cfg.attention_backend, cfg.float8_matmuls) == (True, "auto", True)
    assert cfg.vram_budget_gb is None and cfg.log_every is None
    # configs saved before "auto" existed stored a boolean
    assert recipe.config_from_dict({"gradient_checkpointing": True}).gradient_checkpointing == "on"
    assert recipe.config_from_dict({"gradient_checkpointing": False}).gradient_checkpointing == "off"
    assert set(_errors(recipe, {"attention_backend": "xformers", "log_every": 0, "vram_budget_gb": 0})) == {
        "attention_backend", "log_every", "vram_budget_gb"}
    assert set(_errors(recipe, {"compile": "yes"})) == {"compile"}
    props = recipe.json_schema()["properties"]
    assert props["gradient_checkpointing"]["anyOf"] == [{"type": "string", "enum": ["auto", "selective", "on", "off"]},
                                                        {"type": "boolean"}]  # true/false: on/off
    assert props["attention_backend"]["enum"] == ["auto", "cudnn", "flash", "default"]
    assert props["log_every"]["type"] == ["integer", "null"] and props["compile"]["type"] == "boolean"
    assert props["vram_budget_gb"]["type"] == ["number", "null"]
    assert recipe.config_from_dict(recipe.presets["24gb"]).vram_budget_gb == 22.0


def test_training_areas_count_each_image_at_the_sizes_it_really_trains_at():
    from trainer.buckets import bucket_for
    from trainer.recipes.zimage_plan import training_areas

    assert training_areas([512, 1024], None) == [0.25, 1.0]  # no sizes known: every image reaches every size
    # a 768 px image never upscales: at 1024 it trains at its own size, once, beside its 512 px bucket
    assert training_areas([512, 768, 1024], [(768, 768)]) == [0.25, 0.5625]
    w, h = bucket_for(2000, 1000, 1024)
    assert training_areas([1024], [(2000, 1000), (300, 200)]) == [w * h / 1024**2, 288 * 192 / 1024**2]


def test_estimates_follow_the_images_real_sizes(recipe):
    config = recipe.config_from_dict({"resolutions": [512, 768, 1024], "trigger_word": "tok"})
    gpu = "NVIDIA H100 80GB HBM3"
    large = recipe.estimate(config, 20, gpu, False, [(1536, 1536)] * 20)
    assert large == recipe.estimate(config, 20, gpu, False)  # images above every size: as if unknown
    small = recipe.estimate(config, 20, gpu, False, [(768, 768)] * 20)
    # fewer pixels per step, and the largest activations are a 768 px bucket's, not a 1024 px one's
    assert small.seconds < large.seconds and small.memory_gb < large.memory_gb


def test_demo_estimates_are_the_tiny_models_minutes_not_hours(recipe):
    """The demo model's measured speed on a 2-core CPU (trainer.recipes.zimage_plan.demo_step_seconds):
    a default job on six ~400 px images ran in 5.4 minutes; it was once estimated at 64 hours."""
    default = recipe.config_from_dict({"trigger_word": "tok"})
    photos = [(320 + 32 * i, 384) for i in range(6)]
    guess = recipe.estimate(default, 6, None, True, photos)
    assert guess.device == "demo" and 3 * 60 < guess.seconds < 10 * 60
    # 60 steps at 1024 px with previews at 1024 px took 50 s; at 512 px, 10 s
    big = [(1100, 1100)] * 2
    for size, low, high in ((1024, 30, 80), (512, 5, 20)):
        config = recipe.config_from_dict({"steps": 60, "resolutions": [size], "sample_every": 30, "save_every": 60,
                                          "sample_width": size, "sample_height": size})
        assert low < recipe.estimate(config, 2, None, True, big).seconds < high


@pytest.mark.parametrize("demo, gpu", [(True, None), (False, "NVIDIA H100 80GB HBM3")])
def test_the_last_steps_previews_are_counted_wherever_the_last_step_falls(recipe, demo, gpu):
    """Measured on the demo (2026-12-03): a 150-step job with previews every 250 steps rendered the base's and
    the last step's (with and without the trigger word), 58 s where the estimate, counting the base's only, said 30."""
    def seconds(**config):
        parsed = recipe.config_from_dict({"trigger_word": "tok", "eval_every": 0, **config})
        return recipe.estimate(parsed, 6, gpu, demo).seconds

    assert seconds(steps=150, sample_every=250) == seconds(steps=150, sample_every=150)  # base + the last step's
    assert seconds(steps=150, sample_every=0) < seconds(steps=150, sample_every=150)  # no base previews then


def test_disk_estimates_count_kept_checkpoints_the_lora_and_previews(recipe):
    """Measured: a default demo job (3,000 steps, previews of 1024 px every 250) left 0.200 GB in its folder."""
    default = recipe.config_from_dict({"trigger_word": "tok"})
    demo = recipe.estimate(default, 6, None, True, [(320 + 32 * i, 384) for i in range(6)])
    assert 0.15 < demo.disk_gb < 0.25
    real = recipe.estimate(default, 20, "NVIDIA H100 80GB HBM3", False)
    fewer = recipe.estimate(recipe.config_from_dict({"trigger_word": "tok", "keep_last": 1}), 20,
                            "NVIDIA H100 80GB HBM3", False)
    # rank 32: a float32 LoRA of 0.34 GB and checkpoints of 4x that; four kept, or one
    assert 5 < real.disk_gb < 7 and 1.5 < fewer.disk_gb < 2.5
