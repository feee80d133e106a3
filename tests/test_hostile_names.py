"""Texts a user or a file names, in the trainer's server-rendered pages: escaped as text, and shown as they were
typed (an apostrophe in a preview prompt is an apostrophe, not the six characters \\u0027)."""

from __future__ import annotations

import html
import json

from markupsafe import escape

from tests.test_trainer_worker import TINY_CONFIG, make_export

PROMPT = "Tom & Jerry's <b>cat</b> \"in\" a hat, `${window.__pwned=1}`"
JOB_NAME = "Mia's <img src=x onerror=window.__pwned=1> job"


def test_job_page_shows_the_config_as_typed(trainer_app, trainer_client):
    dataset = make_export(trainer_app.config["STUDIO_SETTINGS"].root).name
    body = {"name": JOB_NAME, "recipe": "zimage-turbo", "dataset": dataset,
            "config": {**TINY_CONFIG, "sample_prompts": [PROMPT]}}
    job = trainer_client.post("/api/jobs", json=body).get_json()["job"]

    page = trainer_client.get(f"/jobs/{job['id']}").get_data(as_text=True)

    config = page.split('<pre class="log" id="config"', 1)[1].split("</pre>", 1)[0]
    shown = html.unescape(config.split(">", 1)[1])
    assert json.dumps(PROMPT, ensure_ascii=False) in shown  # the prompt as typed, in JSON's quotes
    assert "\\u0027" not in shown and "\\u003c" not in shown and "\\u0026" not in shown
    assert "<b>" not in config and "&lt;b&gt;cat&lt;/b&gt;" in config  # escaped as text in the page
    assert "<img src=x" not in page and str(escape(JOB_NAME)) in page


def test_a_safetensors_header_with_a_shape_that_is_no_size_leaves_the_library_listing(make_settings):
    """A crafted file whose header names a tensor of shape ["<b>", 8]: the library lists it as a file it cannot read
    (no rank, nothing to try), never a 500 for the whole page."""
    import json
    import struct

    import trainer

    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    space = app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"diffusion_model.layers.0.attention.to_q.lora_A.weight":
                         {"dtype": "F32", "shape": ["<b>", 8], "data_offsets": [0, 32]}}).encode()
    (space.loras / "crafted.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 32)
    response = app.test_client().get("/api/library")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    (card,) = [entry for entry in response.get_json()["loras"] if entry["file"] == "crafted.safetensors"]
    assert card["rank"] is None and not card["lokr"]
