"""A ComfyUI workflow of a render of Try the LoRA (trainer.comfy_graph): its prompt, seed, size and steps, with the
LoRA file of one of its pictures at that picture's strength, and the library LoRAs it rendered with ("with")
chained after it. By default the picture of the render's own last LoRA file (a job's final LoRA; not one shown
beside it) at strength 1, else at its strongest. ComfyUI's sampler and noise differ from the studio's, so it is the
same prompt, not the same picture.
"""

from __future__ import annotations

import re
from pathlib import Path

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


def workflow(config: dict, names: list[str], image: int | None = None) -> tuple[dict, str]:
    """(the graph, a file name for it) of picture `image` of a render whose LoRA files ComfyUI knows as `names`."""
    which, strength = picked(config, image)
    loras = [(names[which], strength, f"LoRA: {config['loras'][which]['label']}")] if which is not None else []
    loras += [(item["file"], item["strength"], f"With: {item['label']}") for item in config.get("with") or []]
    stem = Path(names[-1 if which is None else which]).stem
    nodes = graph(loras, config["prompt"], width=config["width"], height=config["height"], seed=config["seed"],
                  steps=config["steps"], prefix=stem)
    return nodes, re.sub(r"[^\w.+-]+", "-", f"{stem}-seed{config['seed']}-comfyui-workflow.json")  # for a header
