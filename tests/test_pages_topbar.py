"""The top bar links every tool of the pod: ComfyUI too, once it is installed in the workspace."""

from __future__ import annotations

import pytest

from tests.test_auth import FACTORIES


@pytest.mark.parametrize("name", ["datasets", "trainer"])
def test_comfyui_is_in_the_top_bar_once_installed(name, make_settings, studio_root):
    app = FACTORIES[name](make_settings())
    page = app.test_client().get("/").get_data(as_text=True)
    assert 'data-tool="comfyui"' not in page and 'data-port-comfyui="8188"' in page
    (studio_root / "ComfyUI" / "models" / "loras").mkdir(parents=True)
    page = app.test_client().get("/").get_data(as_text=True)
    assert 'data-tool="comfyui"' in page and "every finished LoRA is in its models/loras" in page
