"""The recipe's published JSON Schema and its own validation (`config_from_dict`) agree: generated
configs, valid and invalid, are accepted by both or refused by both."""

from __future__ import annotations

import jsonschema
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trainer.recipes import ConfigError, get_recipe

RECIPE = get_recipe("zimage-turbo")
SCHEMA = RECIPE.json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FIELDS = RECIPE.form_fields()

_json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-20, 5000), st.floats(-10, 5000, allow_nan=False, allow_infinity=False),
    st.text(max_size=6), st.sampled_from(["", " ", "a\n", "my-lora", "../etc", "tok", "auto", "on", "float8"]))


def _value_for(field: dict, near_only: bool):
    """Values near what the field takes, and (unless `near_only`) values of every other JSON kind."""
    near = []
    if field.get("choices"):
        near.append(st.sampled_from(field["choices"]))
    if field["type"] == "integer":
        near.append(st.integers(-5, 5000))
        near.append(st.sampled_from([0, 1, 16, 64, 512, 500, 1024, 4096, 4112, 1.0, 512.0, 512.5]))
    if field["type"] == "number":
        near.append(st.floats(-1, 50, allow_nan=False, allow_infinity=False))
    if field["type"] == "array":
        item = st.integers(0, 2100) | st.sampled_from([16, 512, 768, 1024, 500]) if field["items"] == "integer" \
            else st.text(max_size=8) | st.sampled_from(["  ", "[trigger] a cat", "\n"])
        near.append(st.lists(item, max_size=4))
    if field["type"] == "string" and not field.get("choices"):
        near.append(st.sampled_from(["my-lora", "tok", "a photo of [trigger]", "x.y_z-1"]))
    if field["type"] == "boolean":
        near.append(st.booleans())
    if field["nullable"]:
        near.append(st.none())
    if near_only and near:
        return st.one_of(*near)
    return st.one_of(*near, _json_scalar, st.lists(_json_scalar, max_size=3))


@st.composite
def configs(draw) -> dict:
    chosen = draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique_by=lambda f: f["name"]))
    near_only = draw(st.booleans())  # about half the configs stay close to valid
    config = {field["name"]: draw(_value_for(field, near_only)) for field in chosen}
    if draw(st.integers(0, 9)) == 0:
        config[draw(st.sampled_from(["lora_rank", "epochs", "Steps"]))] = 1
    return config


def _accepted_by_recipe(config: dict) -> bool:
    try:
        RECIPE.config_from_dict(config)
    except ConfigError:
        return False
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
@example({"resolutions": []})
@example({"resolutions": [512, 512]})
@example({"resolutions": [500]})
@example({"steps": 100.0})
@example({"steps": 100.5})
@example({"gradient_checkpointing": True})
@example({"name": "lora\n"})
@example({"trigger_word": "two\nlines"})
@example({"sample_prompts": ["  "]})
@example({"sample_width": 1000})
@example({"alpha": None})
@example({"rank": True})
@example({"warmup_steps": 10, "steps": 5})
def test_schema_and_validation_agree(config):
    by_schema = VALIDATOR.is_valid(config)
    assert by_schema == _accepted_by_recipe(config), (config, [e.message for e in VALIDATOR.iter_errors(config)])


def test_the_defaults_and_presets_are_valid_for_both():
    assert VALIDATOR.is_valid(RECIPE.defaults())
    for preset in RECIPE.presets.values():
        assert VALIDATOR.is_valid(preset) and _accepted_by_recipe(preset)
