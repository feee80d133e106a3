"""Where each model lives under STUDIO_ROOT/models (real downloads) or models/demo (tiny demo models).

The demo models use the same folder and file names as the real downloads, so the loaders are the
same code either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.settings import Settings

CAPTION_DIR = "Qwen2.5-VL-7B-Instruct-GGUF"
CAPTION_MODEL_FILE = "Qwen2.5-VL-7B-Instruct-Q8_0.gguf"
CAPTION_MMPROJ_FILE = "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf"
ZIMAGE_DIR = "Z-Image-Turbo"
ADAPTER_DIR = "zimage_turbo_training_adapter"
ADAPTER_FILE = "zimage_turbo_training_adapter_v2.safetensors"


@dataclass(frozen=True)
class ModelPaths:
    models_root: Path
    caption_model: Path
    caption_mmproj: Path
    zimage_dir: Path
    training_adapter: Path
    demo: bool


def models_root(settings: Settings) -> Path:
    base = settings.root / "models"
    return base / "demo" if settings.demo else base


def model_paths(settings: Settings) -> ModelPaths:
    root = models_root(settings)
    caption_model = settings.dev_model_path or root / CAPTION_DIR / CAPTION_MODEL_FILE
    caption_mmproj = settings.dev_mmproj_path or root / CAPTION_DIR / CAPTION_MMPROJ_FILE
    return ModelPaths(
        models_root=root,
        caption_model=Path(caption_model),
        caption_mmproj=Path(caption_mmproj),
        zimage_dir=root / ZIMAGE_DIR,
        training_adapter=root / ADAPTER_DIR / ADAPTER_FILE,
        demo=settings.demo,
    )
