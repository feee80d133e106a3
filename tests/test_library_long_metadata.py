"""A LoRA from another trainer can carry megabytes of metadata (kohya's ss_tag_frequency of a big dataset): the
library's cards get each long value cut short, so the page does not download it for every card at every visit;
the file itself keeps it whole."""

from __future__ import annotations

import json

from tests.test_library_edit import _lora, studio  # noqa: F401 - a fixture
from trainer.library_facts import SHOWN_CHARS, safetensors_metadata


def test_a_huge_metadata_value_is_cut_on_the_card(studio):  # noqa: F811
    space = studio.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    tags = json.dumps({f"tag{n}": n for n in range(400_000)})  # about 6 MB
    path = space.loras / "kohya-cat.safetensors"
    path.write_bytes(_lora({"ss_tag_frequency": tags, "modelspec.trigger_phrase": "mycat", "ss_network_dim": "4"}))
    answer = studio.test_client().get("/api/library")
    assert answer.status_code == 200 and len(answer.data) < 200_000
    (card,) = [entry for entry in answer.get_json()["loras"] if entry["file"] == "kohya-cat.safetensors"]
    assert card["metadata"]["ss_tag_frequency"] == tags[:SHOWN_CHARS] + "…"
    assert card["metadata"]["ss_network_dim"] == "4" and card["trigger_word"] == "mycat"
    assert safetensors_metadata(path)["ss_tag_frequency"] == tags  # the file keeps it whole
