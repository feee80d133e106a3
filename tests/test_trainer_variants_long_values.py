"""Variants of a long value (a preservation class written out, a long list of resolutions) were named by the first 80
characters of "<LoRA>-<value>": two values that differ near their end gave two runs of one LoRA name and one job
name, so the compare page and ComfyUI showed two runs nobody could tell apart (and the second LoRA went to the
library as <name>-<job id>). And 1 and 1.0 passed as different values: the same run paid for twice."""

from __future__ import annotations

import pytest

from tests.test_trainer_worker import TINY_CONFIG, make_export
from trainer.recipes.zimage_turbo import NAME_PATTERN


@pytest.fixture
def client(trainer_app):
    make_export(trainer_app.config["STUDIO_SETTINGS"].root)
    return trainer_app.test_client()


def _body(**vary):
    return {"name": "cat", "dataset": "tiny-set", "config": {**TINY_CONFIG, "name": "cat", "trigger_word": "zkw"},
            "vary": vary}


def test_long_values_that_differ_near_their_end_get_names_of_their_own(client):
    import re

    common = "a photograph of a woman with long curly red hair standing in a sunlit garden, 35mm film, portrait "
    values = [common + "A", common + "B", common + "C"]
    response = client.post("/api/jobs/variants", json=_body(field="preserve_class", values=values))
    assert response.status_code == 201, response.get_json()
    jobs = response.get_json()["jobs"]
    loras = [j["config"]["name"] for j in jobs]
    assert len(set(loras)) == 3, loras
    assert all(name.startswith("cat-class") and re.match(NAME_PATTERN, name) for name in loras), loras
    names = [j["name"] for j in jobs]
    assert len(set(names)) == 3 and all(len(name) <= 120 for name in names), names
    assert all(name.startswith("cat · Preserve the class a photograph") for name in names), names


def test_a_long_list_keeps_the_lora_name_in_front():
    from trainer.variants import variant_payloads

    many = [512 + 16 * i for i in range(40)]
    variants = variant_payloads({"name": "my-cat-lora", "config": {"name": "my-cat-lora"}}, "resolutions",
                                [many, [*many, 2048]], label="Resolutions")
    names = [v["config"]["name"] for v in variants]
    assert all(name.startswith("my-cat-lora-res512_528") and len(name) <= 80 for name in names), names
    assert len(set(names)) == 2 and len({v["name"] for v in variants}) == 2


def test_the_same_number_written_twice_is_refused(client):
    response = client.post("/api/jobs/variants", json=_body(field="learning_rate", values=[1, 1.0]))
    assert response.status_code == 422 and "must differ" in response.get_json()["error"]
    assert client.get("/api/jobs").get_json()["jobs"] == []
