"""Values an API client or a pasted config can send that the new job form itself never would: NaN and infinity
(Python's JSON reads them), numbers past what a float holds, a job name of direction overrides, and ai-toolkit configs
with absurd numbers. Each is refused or said, never queued as something else or answered with a 500."""

from __future__ import annotations

import json

import pytest

from tests.test_trainer_worker import TINY_CONFIG, make_export
from trainer.aitoolkit_config import translate


@pytest.fixture
def dataset(trainer_app):
    return make_export(trainer_app.config["STUDIO_SETTINGS"].root).name


def _raw(client, path, dataset, config_json: str, **extra):
    """POST a body whose config is written by hand (NaN and Infinity are not JSON, so json= cannot send them)."""
    body = json.dumps({"dataset": dataset, **extra, "config": {}})[:-3] + config_json + "}"
    return client.post(path, data=body, content_type="application/json")


def test_nan_and_infinity_are_refused_instead_of_queued_as_nothing(trainer_client, trainer_app, dataset):
    # the job store writes NaN as null: a job queued with max_grad_norm NaN failed at start, and alpha Infinity
    # trained silently with alpha = rank
    config = json.dumps(TINY_CONFIG)[:-1] + ', "max_grad_norm": NaN, "alpha": Infinity, "weight_decay": -Infinity}'
    answer = _raw(trainer_client, "/api/jobs", dataset, config)
    assert answer.status_code == 422, answer.get_json()
    refused = {item["field"]: item["message"] for item in answer.get_json()["details"]}
    assert set(refused) == {"max_grad_norm", "alpha", "weight_decay"}
    assert refused["alpha"] == "Must be a plain number: NaN, infinity and numbers past 1e308 are not."
    assert trainer_app.extensions["job_store"].list(kind="train") == []


def test_a_number_past_what_a_float_holds_is_refused_not_a_500(trainer_client, dataset):
    config = json.dumps(TINY_CONFIG)[:-1] + ', "alpha": 1' + "0" * 400 + "}"
    answer = _raw(trainer_client, "/api/jobs/validate?report=1", dataset, config)
    assert answer.status_code == 200
    assert [e["field"] for e in answer.get_json()["errors"]] == ["alpha"]


def test_a_job_name_keeps_no_direction_override_and_an_invisible_one_is_refused(trainer_client, trainer_app, dataset):
    made = trainer_client.post("/api/jobs", json={"name": "\u202egpj.exe", "dataset": dataset, "config": TINY_CONFIG})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["job"]["name"] == "gpj.exe"  # shown as typed in the dashboard, not as "exe.jpg"
    tabbed = trainer_client.post("/api/jobs", json={"name": "cat\tnight\u2067", "dataset": dataset,
                                                    "config": {**TINY_CONFIG, "steps": 7}})
    assert tabbed.get_json()["job"]["name"] == "cat night"
    for invisible in ["\u202e\u200b", "\ufeff", "\x00\x07"]:
        answer = trainer_client.post("/api/jobs", json={"name": invisible, "dataset": dataset, "config": TINY_CONFIG})
        assert answer.status_code == 422, invisible
        assert answer.get_json()["details"][0]["field"] == "job_name"
        assert "shows nothing" in answer.get_json()["details"][0]["message"]
    # letters of any script and emoji stay as they are
    kept = trainer_client.post("/api/jobs", json={"name": "קטה שלי 🐈‍⬛", "dataset": dataset,
                                                  "config": {**TINY_CONFIG, "steps": 8}})
    assert kept.get_json()["job"]["name"] == "קטה שלי 🐈‍⬛"


def test_an_ai_toolkit_config_with_a_number_past_a_float_is_read_with_a_warning(trainer_client):
    text = f"network:\n  type: lora\n  linear: 16\ntrain:\n  steps: 1{'0' * 400}\n  lr: 1e-4\n"
    answer = trainer_client.post("/api/config/parse", json={"text": text})
    assert answer.status_code == 200, answer.data[:300]
    body = answer.get_json()
    assert "steps" not in body["config"] and body["config"]["rank"] == 16
    assert body["warnings"] == ["train.steps: too large to be any setting's value; the form's value stays."]


def test_an_ai_toolkit_fraction_where_a_count_goes_is_named_not_cut(trainer_client, dataset):
    doc = {"network": {"type": "lora", "linear": 16}, "train": {"steps": 2500.5, "batch_size": 0.5}}
    translated = translate(doc)
    assert translated.config["steps"] == 2500.5 and translated.config["batch_size"] == 0.5
    # the recipe then names both beside their fields, instead of 2500 steps and a batch of 0 taken unseen
    answer = trainer_client.post("/api/jobs/validate?report=1",
                                 json={"dataset": dataset, "config": {**TINY_CONFIG, **translated.config}})
    errors = {e["field"]: e["message"] for e in answer.get_json()["errors"]}
    assert errors == {"steps": "Must be a whole number.", "batch_size": "Must be a whole number."}
    assert translate({"network": {"linear": 16}, "train": {"steps": 3000.0}}).config["steps"] == 3000


def test_an_ai_toolkit_preview_size_moved_to_a_multiple_of_16_is_said(trainer_client):
    translated = translate({"network": {"linear": 16}, "train": {}, "sample": {"width": 1000, "height": 832}})
    assert translated.config["sample_width"] == 1008 and translated.config["sample_height"] == 832
    assert translated.warnings == ["sample width 1000: preview sides are multiples of 16, at least 64, here; 1008 "
                                   "was taken."]


def test_an_ai_toolkit_alpha_that_is_not_a_number_keeps_the_forms_alpha(trainer_client):
    translated = translate({"network": {"type": "lora", "linear": 16, "linear_alpha": "sixteen"}, "train": {}})
    assert "alpha" not in translated.config and translated.config["rank"] == 16
    assert translated.warnings == ["linear_alpha sixteen is not a number: the form's alpha stays."]


def test_a_webhook_url_of_a_megabyte_is_refused_with_its_length(trainer_client):
    url = "https://hooks.example.com/" + "a" * 1_000_000
    response = trainer_client.post("/api/jobs/validate?report=1", json={"dataset": "cats", "webhook_url": url})
    errors = {e["field"]: e["message"] for e in response.get_json()["errors"]}
    assert "1,000,026 characters long" in errors["webhook_url"] and "at most 2,048" in errors["webhook_url"]
    fine = trainer_client.post("/api/jobs/validate?report=1",
                               json={"dataset": "cats", "webhook_url": "https://hooks.example.com/x"})
    assert "webhook_url" not in {e["field"] for e in fine.get_json()["errors"]}
