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

from trainer.engine.sampling import previews

WORKFLOW_NAME = "comfyui_workflow.json"
# folder under ComfyUI/models -> file, as in Comfy-Org/z_image_turbo (split_files/<folder>/<file>)
MODEL_FILES = {"diffusion_models": "z_image_turbo_bf16.safetensors", "text_encoders": "qwen_3_4b.safetensors",
               "vae": "ae.safetensors"}
SHIFT = 3.0  # ModelSamplingAuraFlow, as in ComfyUI's Z-Image-Turbo template


def workflow(config, lora_file: str, strength: float = 1.0) -> dict:
    """The API-format graph: ids are strings, a link is [node id, output index]."""
    first = previews(config)[0] if config.sample_prompts else None  # with its own size, seed and steps, if any
    prompt = first.text if first else config.trigger_word
    width, height = (first.width, first.height) if first else (config.sample_width, config.sample_height)
    seed, steps = (first.seed, first.steps) if first else (config.seed, config.sample_steps)
    return {
        "1": {"class_type": "UNETLoader", "_meta": {"title": "Z-Image-Turbo"},
              "inputs": {"unet_name": MODEL_FILES["diffusion_models"], "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "_meta": {"title": "Qwen3-4B text encoder"},
              "inputs": {"clip_name": MODEL_FILES["text_encoders"], "type": "lumina2"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": MODEL_FILES["vae"]}},
        "4": {"class_type": "LoraLoaderModelOnly", "_meta": {"title": f"LoRA: {config.name}"},
              "inputs": {"model": ["1", 0], "lora_name": lora_file, "strength_model": strength}},
        "5": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["4", 0], "shift": SHIFT}},
        "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"},
              "inputs": {"text": prompt, "clip": ["2", 0]}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},  # Turbo: no CFG
        "8": {"class_type": "EmptySD3LatentImage",
              "inputs": {"width": width, "height": height, "batch_size": 1}},
        "9": {"class_type": "KSampler",
              "inputs": {"model": ["5", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["8", 0],
                         "seed": seed, "steps": steps, "cfg": 1.0,
                         "sampler_name": "res_multistep", "scheduler": "simple", "denoise": 1.0}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["3", 0]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": config.name}},
    }
