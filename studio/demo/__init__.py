"""Tiny, randomly initialised stand-ins for the real models, built offline and deterministically.

`ensure_demo_models(settings)` writes them under models/demo/ with the same folder and file names as
the real downloads (see studio.registry), so demo mode and tests run the real loaders.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

from studio.registry import ModelPaths, model_paths
from studio.settings import Settings


def _build_caption_pair(paths: ModelPaths) -> None:
    from studio.demo.tiny_qwen25vl import write_tiny_qwen25vl

    target = paths.caption_model.parent
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".build-") as tmp:
        text, mmproj = write_tiny_qwen25vl(Path(tmp))
        shutil.move(str(mmproj), paths.caption_mmproj)
        shutil.move(str(text), paths.caption_model)  # the text model last: its presence means "complete"


def _build_zimage(paths: ModelPaths) -> None:
    from studio.demo.tiny_zimage import write_tiny_zimage

    paths.zimage_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.zimage_dir.parent, prefix=".build-") as tmp:
        folder = Path(tmp) / "pipeline"
        write_tiny_zimage(folder)
        if paths.zimage_dir.exists():
            shutil.rmtree(paths.zimage_dir)
        folder.rename(paths.zimage_dir)


def _build_adapter(paths: ModelPaths) -> None:
    from studio.demo.tiny_zimage import write_tiny_training_adapter

    paths.training_adapter.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.training_adapter.parent, prefix=".build-") as tmp:
        out = Path(tmp) / paths.training_adapter.name
        write_tiny_training_adapter(paths.zimage_dir, out)
        out.rename(paths.training_adapter)


def ensure_demo_models(settings: Settings, caption: bool = True, zimage: bool = True) -> ModelPaths:
    """Build whatever demo model is missing; safe to call from several processes at once."""
    if not settings.demo:
        raise ValueError("ensure_demo_models needs STUDIO_DEMO=1 (demo models live under models/demo).")
    paths = model_paths(settings)
    paths.models_root.mkdir(parents=True, exist_ok=True)
    with open(paths.models_root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if caption and settings.dev_model_path is None and not paths.caption_model.exists():
            _build_caption_pair(paths)
        if zimage and not (paths.zimage_dir / "model_index.json").exists():
            _build_zimage(paths)
        if zimage and not paths.training_adapter.exists():
            _build_adapter(paths)
    return paths
