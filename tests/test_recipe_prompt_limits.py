"""Preview prompts have bounds: every preview round renders each of them (three times, with the leak check), so a
list without end or a prompt of a book's length would spend a paid GPU's time on previews. Refused at once, by the
pod's form and API, the serverless worker and the JSON Schema alike."""

from __future__ import annotations

import pytest

from trainer.recipes import ConfigError, get_recipe
from trainer.recipes.zimage_turbo import MAX_PROMPT_CHARS, MAX_SAMPLE_PROMPTS


@pytest.mark.parametrize("prompts, words", [
    (["[trigger] a photo"] * (MAX_SAMPLE_PROMPTS + 1), f"At most {MAX_SAMPLE_PROMPTS} values."),
    (["[trigger] " + "very " * 500], f"At most {MAX_PROMPT_CHARS:,} characters each."),
])
def test_too_many_or_too_long_preview_prompts_are_refused(prompts, words):
    with pytest.raises(ConfigError) as caught:
        get_recipe("zimage-turbo").config_from_dict({"sample_prompts": prompts})
    assert caught.value.errors == [{"field": "sample_prompts", "message": words}]


def test_the_bounds_are_in_the_schema_and_the_limits_themselves_pass():
    recipe = get_recipe("zimage-turbo")
    schema = recipe.json_schema()["properties"]["sample_prompts"]
    assert schema["maxItems"] == MAX_SAMPLE_PROMPTS and schema["items"]["maxLength"] == MAX_PROMPT_CHARS
    prompts = [f"[trigger] prompt {i} " + "x" * (MAX_PROMPT_CHARS - 20) for i in range(MAX_SAMPLE_PROMPTS)]
    assert len(recipe.config_from_dict({"sample_prompts": prompts}).sample_prompts) == MAX_SAMPLE_PROMPTS


def test_the_serverless_worker_refuses_them_before_any_download(make_settings):
    from serverless.handler import InputError, parse_input

    data = {"job_config": {"sample_prompts": ["a"] * (MAX_SAMPLE_PROMPTS + 1)}, "dataset": {"prefix": "cats/"}}
    with pytest.raises(InputError) as caught:
        parse_input(data, make_settings())
    assert {"field": "sample_prompts", "message": f"At most {MAX_SAMPLE_PROMPTS} values."} in caught.value.details


@pytest.mark.parametrize("field, limit", [("trigger_word", 200), ("preserve_class", 200),
                                          ("default_caption", MAX_PROMPT_CHARS)])
def test_the_texts_every_caption_and_prompt_carries_have_bounds(field, limit):
    """A trigger word, a class word or a default caption goes into every caption and preview prompt: a megabyte of
    one was taken as it was."""
    recipe = get_recipe("zimage-turbo")
    extra = {"trigger_word": "tok"} if field == "preserve_class" else {}
    assert getattr(recipe.config_from_dict({**extra, field: "w" * limit}), field) == "w" * limit
    with pytest.raises(ConfigError) as caught:
        recipe.config_from_dict({**extra, field: "w" * (limit + 1)})
    assert caught.value.errors == [{"field": field, "message": f"At most {limit:,} characters."}]
    assert recipe.json_schema()["properties"][field]["maxLength"] == limit
