"""README "## API": `POST /api/config/parse` `{"text"}` turns YAML or JSON back into settings. PyYAML reads YAML 1.1,
where 2e-4 (an exponent without a dot or a sign) is text: `{"learning_rate": 2e-4}` came back as "2e-4", which the
job's validation refuses ("Must be a number"). JSON and YAML 1.2 read a number, and so does the text view now."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("text", ['{"learning_rate": 2e-4, "steps": 100}', "learning_rate: 2e-4\nsteps: 100",
                                  "learning_rate: 2.0e-4\nsteps: 100", "learning_rate: 0.0002\nsteps: 100"])
def test_an_exponent_reads_as_a_number(trainer_client, text):
    answer = trainer_client.post("/api/config/parse", json={"text": text})
    assert answer.status_code == 200
    assert answer.get_json()["config"] == {"learning_rate": 0.0002, "steps": 100}


def test_the_parsed_settings_validate(trainer_client):
    config = trainer_client.post("/api/config/parse", json={"text": "learning_rate: 1e-4"}).get_json()["config"]
    report = trainer_client.post("/api/jobs/validate?report=1", json={"name": "x", "dataset": "none", "config": config})
    assert not [e for e in report.get_json()["errors"] if e["field"] == "learning_rate"]


def test_quoted_text_and_words_stay_text(trainer_client):
    text = 'trigger_word: "2e-4"\nname: e5\nsample_prompts: ["1e3 cats"]'
    config = trainer_client.post("/api/config/parse", json={"text": text}).get_json()["config"]
    assert config == {"trigger_word": "2e-4", "name": "e5", "sample_prompts": ["1e3 cats"]}
