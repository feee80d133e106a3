"""The tiny Z-Image demo pipeline and training adapter: layout, loading, rendering, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from studio.demo import ensure_demo_models
from studio.demo.tiny_zimage import write_tiny_training_adapter, write_tiny_zimage
from studio.registry import model_paths


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _render(pipe, seed: int = 0) -> np.ndarray:
    return pipe(
        "a photo of the tiny cat",
        height=64,
        width=64,
        num_inference_steps=2,
        guidance_scale=0.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images[0]


def test_ensure_demo_models_builds_pipeline_and_adapter(make_settings):
    from diffusers import ZImagePipeline
    from safetensors import safe_open

    settings = make_settings(STUDIO_DEMO="1")
    paths = ensure_demo_models(settings, caption=False)
    assert paths == model_paths(settings)
    index = json.loads((paths.zimage_dir / "model_index.json").read_text())
    assert index["_class_name"] == "ZImagePipeline"
    assert index["transformer"] == ["diffusers", "ZImageTransformer2DModel"]
    assert paths.training_adapter.is_file()

    with safe_open(str(paths.training_adapter), "pt") as handle:
        keys = sorted(handle.keys())
    assert "diffusion_model.layers.0.attention.to_q.lora_A.weight" in keys
    assert "diffusion_model.layers.1.adaLN_modulation.0.lora_B.weight" in keys
    assert all(k.startswith("diffusion_model.layers.") for k in keys)
    assert len(keys) == 2 * 8 * 2  # A and B, 8 modules, 2 blocks

    pipe = ZImagePipeline.from_pretrained(str(paths.zimage_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    base = _render(pipe)
    assert base.shape == (64, 64, 3)
    assert np.isfinite(base).all()

    # the adapter is in a format diffusers reads, and it changes the output
    pipe.load_lora_weights(str(paths.training_adapter), adapter_name="adapter")
    with_adapter = _render(pipe)
    assert np.abs(with_adapter - base).mean() > 1e-4
    pipe.unload_lora_weights()
    assert np.abs(_render(pipe) - base).max() < 1e-6


def test_tiny_build_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_tiny_zimage(first)
    write_tiny_zimage(second)
    write_tiny_training_adapter(first, tmp_path / "a.safetensors")
    write_tiny_training_adapter(second, tmp_path / "b.safetensors")
    assert _digest(first) == _digest(second)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
