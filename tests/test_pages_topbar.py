"""The top bar links every tool of the pod: ComfyUI too, once it is installed in the workspace (a models/loras folder
alone, kept on a volume from elsewhere, is not ComfyUI)."""

from __future__ import annotations

import pytest

from tests.test_auth import FACTORIES


@pytest.mark.parametrize("name", ["datasets", "trainer"])
def test_comfyui_is_in_the_top_bar_once_installed(name, make_settings, studio_root):
    app = FACTORIES[name](make_settings())
    page = app.test_client().get("/").get_data(as_text=True)
    assert 'data-tool="comfyui"' not in page and 'data-port-comfyui="8188"' in page
    (studio_root / "ComfyUI" / "models" / "loras").mkdir(parents=True)  # a folder alone: nothing answers there
    assert 'data-tool="comfyui"' not in app.test_client().get("/").get_data(as_text=True)
    (studio_root / "ComfyUI" / "main.py").write_text("# ComfyUI\n")
    page = app.test_client().get("/").get_data(as_text=True)
    assert 'data-tool="comfyui"' in page and "every finished LoRA is in its models/loras" in page
