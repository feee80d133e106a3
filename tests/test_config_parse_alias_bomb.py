"""The form's text view parses YAML: a few hundred bytes of aliases that stand for millions of values (each alias
repeats a list by reference, and writing the config out as JSON expands them all) are refused with a sentence
instead of taking the web worker's memory; a config using an alias or two, as people write them, still parses."""

from __future__ import annotations

import json


def _bomb(levels: int) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        prev, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_with_a_sentence(trainer_client):
    text = _bomb(9)  # 9^9: 387 million strings once written out
    assert len(text) < 600
    response = trainer_client.post("/api/config/parse", json={"text": text})
    assert response.status_code == 422, response.get_data(as_text=True)[:200]
    error = response.get_json()["error"]
    assert "more than 100,000 values once its aliases (*name) are written out" in error


def test_a_config_with_an_alias_or_two_still_parses(trainer_client):
    text = "defaults: &d\n  steps: 1200\n  rank: 16\nconfig: *d\nname: cat\n"
    response = trainer_client.post("/api/config/parse", json={"text": text})
    assert response.status_code == 200, response.get_json()
    assert json.loads(json.dumps(response.get_json()["config"]))["config"] == {"steps": 1200, "rank": 16}
