"""A ComfyUI workflow of a render of Try the LoRA (trainer.comfy_graph): its prompt, seed, size and steps, with the
LoRA file of one of its pictures at that picture's strength, and the library LoRAs it rendered with ("with")
chained after it. By default the picture of the render's own last LoRA file (a job's final LoRA; not one shown
beside it) at strength 1, else at its strongest. ComfyUI's sampler and noise differ from the studio's, so it is the
same prompt, not the same picture.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from flask import current_app, has_app_context

from trainer.comfy_graph import graph


def pictures(config: dict) -> list[tuple[int | None, float]]:
    """(index of the LoRA file, or None for the picture without it; strength) of each picture, in the order the
    worker renders them (trainer.engine.try_lora)."""
    strengths, count = config["strengths"], len(config["loras"])
    return ([(None, 0.0)] if 0 in strengths else []) + [(index, s) for index in range(count) for s in strengths if s]


def picked(config: dict, image: int | None) -> tuple[int | None, float]:
    shown = pictures(config)
    if image is not None:
        if not 0 <= image < len(shown):
            raise ValueError(f"This render has {len(shown)} pictures; 'image' counts them from 0.")
        return shown[image]
    strengths = [s for s in config["strengths"] if s]
    if not strengths or not config["loras"]:
        return None, 0.0
    own = [index for index, lora in enumerate(config["loras"]) if not lora.get("library")] or [0]  # not "beside"
    return own[-1], 1.0 if 1.0 in strengths else max(strengths, key=abs)


def workflow(config: dict, names: list[str], image: int | None = None,
             in_comfyui: Callable[[str], str] | None = None) -> tuple[dict, str]:
    """(the graph, a file name for it) of picture `image` of a render whose LoRA files the library knows as `names`;
    `in_comfyui` gives the name ComfyUI's loras has a library file under (in a request of the trainer, by default:
    trainer.library_comfyui.comfyui_name)."""
    named = in_comfyui or _comfyui_name
    which, strength = picked(config, image)
    loras = [(named(names[which]), strength, f"LoRA: {config['loras'][which]['label']}")] if which is not None else []
    loras += [(named(item["file"]), item["strength"], f"With: {item['label']}") for item in config.get("with") or []]
    stem = Path(names[-1 if which is None else which]).stem
    nodes = graph(loras, config["prompt"], width=config["width"], height=config["height"], seed=config["seed"],
                  steps=config["steps"], prefix=stem, guidance=config.get("guidance_scale") or 0.0)
    return nodes, header_file_name(f"{stem}-seed{config['seed']}-comfyui-workflow.json")


def header_file_name(name: str) -> str:
    """`name` for a Content-Disposition header's plain `filename="..."`: ASCII letters, digits and `_.+-` only (a
    header's bytes are Latin-1, so the server refuses "猫" there; accents go, "é" becomes "e")."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", plain).lstrip("-.") or "comfyui-workflow.json"


def _comfyui_name(name: str) -> str:
    if not has_app_context() or "STUDIO_WORKSPACE" not in current_app.config:
        return name
    from trainer.library_comfyui import comfyui_name

    return comfyui_name(current_app.config["STUDIO_WORKSPACE"], name)
