"""Try a LoRA: one prompt rendered with one seed at several LoRA strengths, side by side, from one LoRA
file or several (a job's checkpoints, to see which step is best).

Strength 0 is the base model, rendered once; the others add each LoRA file that many times to each
module's output (hooks, so one loaded transformer serves every file and strength and its weights never
change). Rendered as
ComfyUI renders a Z-Image-Turbo LoRA: no training adapter, the job's preview steps and guidance.
The text encoder is loaded first and freed before the transformer, so the peak is the transformer's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from trainer.engine import model as zmodel
from trainer.engine.cache import free_memory
from trainer.engine.errors import is_oom
from trainer.engine.sampling import Sampler, save_png
from trainer.engine.speed_setup import quantize


@dataclass(frozen=True)
class TryRequest:
    prompt: str
    strengths: tuple[float, ...]
    seed: int
    width: int
    height: int
    steps: int
    guidance_scale: float
    quantize_base: str = "none"  # the training job's memory setting, so what trained on a card renders on it
    float8_matmuls: bool = False


def image_name(index: int) -> str:
    return f"{index}.png"


def render(request: TryRequest, lora_paths: list[Path], paths, out_dir: Path, device: str | None = None,
           on_progress: Callable[[dict], None] | None = None, log: Callable[[str], None] = print,
           labels: list[str] | None = None) -> list[dict]:
    """Render `request` into out_dir/<i>.png, each written whole: the base model once (strength 0), then
    every other strength for each LoRA file in turn (`labels` name them in messages). Returns one entry
    per image: {strength, lora (the file's index in lora_paths, None for the base model), file, seconds}."""
    report = on_progress or (lambda _values: None)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    plan = [(None, 0.0)] if 0 in request.strengths else []
    plan += [(index, s) for index in range(len(lora_paths)) for s in request.strengths if s != 0]
    total = len(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    loras = [zmodel.LoraDelta.load(path, label=f"The LoRA file {path.parent.name}/{path.name}") for path in lora_paths]

    zmodel.check_model_files(paths, adapter=False)
    report({"phase": "loading", "done": 0, "total": total, "message": "Encoding the prompt"})
    tokenizer, encoder = zmodel.load_text_encoder(paths, dev, dtype)
    texts = [request.prompt] + ([""] if request.guidance_scale > 0 else [])
    embeddings = dict(zip(texts, zmodel.encode_prompts(tokenizer, encoder, texts), strict=True))
    del tokenizer, encoder
    free_memory(dev)

    report({"phase": "loading", "done": 0, "total": total, "message": "Loading the transformer"})
    transformer = zmodel.load_transformer(paths, dev, dtype)
    for lora in loras:  # a LoRA for another model fails before anything renders
        zmodel.check_fits(transformer, lora)
    quantize(request, transformer, dev, dtype, log, check_errors=False)
    settings = SimpleNamespace(sample_width=request.width, sample_height=request.height,
                               sample_steps=request.steps, guidance_scale=request.guidance_scale)
    sampler = Sampler(settings, paths, dev, embeddings, None, torch.bfloat16 if dev.type == "cuda" else None)

    images = []
    for index, (which, strength) in enumerate(plan):
        label = "base model" if which is None else f"LoRA at {strength:g}"
        if which is not None and len(loras) > 1:
            label += f", {labels[which] if labels else lora_paths[which].parent.name}"
        report({"phase": "rendering", "done": index, "total": total,
                "message": f"Rendering {index + 1} of {total}: {label}"})
        started = time.monotonic()
        applied = zmodel.adapter_applied(transformer, loras[which], strength) if which is not None \
            else contextlib.nullcontext()
        with applied:
            image = _render_one(sampler, transformer, request, dev, log)
        save_png(image, out_dir / image_name(index))
        seconds = round(time.monotonic() - started, 2)
        images.append({"strength": strength, "lora": which, "file": image_name(index), "seconds": seconds})
        log(f"Rendered {label} in {seconds:.1f} s.")
        report({"phase": "rendering", "done": index + 1, "total": total, "images": images})
    return images


def _render_one(sampler: Sampler, transformer, request: TryRequest, dev: torch.device, log: Callable[[str], None]):
    """Out of memory (the VAE's peak at a large size is several GB): once more with the VAE decoding in
    tiles, which is what the rest of the render then uses."""
    while True:
        try:
            return sampler.render_image(transformer, request.prompt, request.seed, "try")
        except Exception as exc:
            if not is_oom(exc) or not sampler.lighten():
                raise
        free_memory(dev)
        log("Out of memory while rendering; the VAE decodes in tiles from now on and the image is rendered again.")
