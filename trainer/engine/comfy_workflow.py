"""A ComfyUI workflow for the finished LoRA, saved beside it as comfyui_workflow.json.

ComfyUI's "API format" (node id -> class_type and inputs), which its page loads when the file is
dropped on it and its /prompt endpoint runs as it is. The graph is ComfyUI's own Z-Image-Turbo
template with a LoraLoaderModelOnly between the model and the sampler, filled in with this job's
first preview prompt (trigger word included), seed, size and steps, so the first thing a user renders
in ComfyUI is a prompt they have seen previewed on the job page (ComfyUI's sampler and noise differ, so
not the same picture). It names the model files as the
Comfy-Org/z_image_turbo repository splits them (MODEL_FILES), the names ComfyUI's template uses.
"""

from __future__ import annotations

from trainer.comfy_graph import MODEL_FILES, graph  # noqa: F401 - MODEL_FILES is read from here too
from trainer.engine.sampling import previews

WORKFLOW_NAME = "comfyui_workflow.json"


def workflow(config, lora_file: str, strength: float = 1.0) -> dict:
    """The API-format graph (trainer.comfy_graph) of the LoRA with the job's first preview prompt."""
    first = previews(config)[0] if config.sample_prompts else None  # with its own size, seed and steps, if any
    prompt = first.text if first else config.trigger_word
    width, height = (first.width, first.height) if first else (config.sample_width, config.sample_height)
    seed, steps = (first.seed, first.steps) if first else (config.seed, config.sample_steps)
    guidance, negative = (first.guidance, first.negative) if first else (config.guidance_scale, "")
    return graph([(lora_file, strength, f"LoRA: {config.name}")], prompt, width=width, height=height, seed=seed,
                 steps=steps, prefix=config.name, guidance=guidance, negative=negative)
