"""A LoRA whose weights hold NaN or infinity (a training whose loss blew up, a broken conversion) is refused when it
is uploaded or added from ComfyUI, with a sentence: ComfyUI would load it and render black pictures without a word."""

from __future__ import annotations

import numpy as np
import pytest

import trainer
from tests.test_library_unloadable_upload import LAYER, _upload
from trainer.lora_resize import encode


@pytest.fixture
def studio(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1))
    (app.config["STUDIO_WORKSPACE"].root / "ComfyUI" / "models" / "loras").mkdir(parents=True)
    return app


def _broken(value: float, dtype: str) -> bytes:
    up = np.ones((64, 4), np.float32)
    up[17, 2] = value
    return encode({f"{LAYER}.lora_A.weight": np.ones((4, 64), np.float32), f"{LAYER}.lora_B.weight": up}, dtype, {})


@pytest.mark.parametrize("value, dtype", [(np.nan, "F32"), (np.inf, "BF16"), (-np.inf, "F16")])
def test_an_upload_with_nan_or_infinite_weights_is_refused(studio, value, dtype):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    job = _upload(client, "blown.safetensors", _broken(value, dtype))
    assert job["status"] == "failed", job
    assert "blown.safetensors holds NaN or infinite weights" in job["error"]
    assert "lora_B" in job["error"] and "earlier checkpoint" in job["error"]
    assert not list(space.loras.glob("*.safetensors"))


def test_adding_one_from_comfyui_is_refused_too(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    (space.comfyui_loras / "blown.safetensors").write_bytes(_broken(np.nan, "F32"))
    added = client.post("/api/library/comfyui/blown.safetensors/add")
    assert added.status_code == 422 and "holds NaN or infinite weights" in added.get_json()["error"]
    assert not list(space.loras.glob("*.safetensors"))
