"""README "## API": `GET /api/library/files` lists the library's files, and `DELETE /api/library/files/<file>`,
`…/resize`, `…/renders` take a file. The list gave only `name` (the stem, what a job's init_lora takes), which those
routes answer 404 to; each entry now also has `file`, the name they take, as `GET /api/library` has."""

from __future__ import annotations

import numpy as np

import trainer
from trainer.lora_resize import encode


def _lora() -> bytes:
    prefix = "diffusion_model.layers.0.attention.to_q"
    return encode({f"{prefix}.lora_A.weight": np.ones((4, 16), np.float32),
                   f"{prefix}.lora_B.weight": np.ones((16, 4), np.float32)}, "F32", {})


def test_each_listed_library_file_names_the_file_its_routes_take(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    space = app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    (space.loras / "my-cat.safetensors").write_bytes(_lora())
    client = app.test_client()
    [entry] = client.get("/api/library/files").get_json()["files"]
    assert entry["name"] == "my-cat" and entry["file"] == "my-cat.safetensors"
    assert entry["rank"] == 4
    assert client.get(f"/api/library/files/{entry['file']}/smaller").status_code == 200
    deleted = client.delete(f"/api/library/files/{entry['file']}")
    assert deleted.status_code == 200 and deleted.get_json()["deleted"] == "my-cat.safetensors"
