"""The model files ComfyUI needs to run the workflow saved beside every finished LoRA.

models-comfyui.txt lists them (the models.txt format). The fetcher downloads them after the studio's
own models, only when ComfyUI is installed in the workspace, into models/<target>/ like any model; each
file's folder is named for the ComfyUI category it belongs to (`.../diffusion_models/<file>`). ComfyUI
is started with a model paths file (`--extra-model-paths-config`) that adds those folders, so the
workflow's file names resolve without copying 20 GB into ComfyUI's own folders.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from studio.models_txt import ModelsFileError, ModelSpec, load_models_txt

COMFYUI_MODELS_TXT = Path(__file__).resolve().parent.parent / "models-comfyui.txt"
PATHS_SECTION = "zimage_studio"


def comfyui_specs(studio_specs: list[ModelSpec], path: Path | None = None) -> list[ModelSpec]:
    """models-comfyui.txt, checked not to share a target folder with the studio's own models."""
    specs = load_models_txt(path or COMFYUI_MODELS_TXT)
    taken = {spec.target for spec in studio_specs}
    for spec in specs:
        if spec.target in taken:
            raise ModelsFileError(f"{(path or COMFYUI_MODELS_TXT).name}, line {spec.line}: target folder "
                                  f"{spec.target!r} is already used by models.txt.")
    return specs


def category_folders(specs: list[ModelSpec]) -> dict[str, list[str]]:
    """ComfyUI category -> folders under models/ that hold its files (the folder each file lies in)."""
    folders: dict[str, list[str]] = {}
    for spec in specs:
        for pattern in spec.patterns:
            parent = PurePosixPath(spec.target, pattern).parent
            entries = folders.setdefault(parent.name, [])
            if str(parent) not in entries:
                entries.append(str(parent))
    return folders


def write_paths_file(path: Path, models_root: Path, specs: list[ModelSpec]) -> None:
    """ComfyUI's extra model paths file (YAML; JSON is YAML) adding the downloaded folders."""
    section: dict[str, str] = {"base_path": str(models_root)}
    for category, folders in category_folders(specs).items():
        section[category] = "\n".join(folders)  # ComfyUI reads one folder per line
    path.write_text("# Written at start: ComfyUI's Z-Image-Turbo files, downloaded by the studio "
                    "(models-comfyui.txt).\n" + json.dumps({PATHS_SECTION: section}, indent=2) + "\n")
