"""ComfyUI's Z-Image-Turbo workflow with LoRAs, in its "API format" (node id -> class_type and inputs), which its page
loads when the file is dropped on it and its /prompt endpoint runs as it is. ComfyUI's own Z-Image-Turbo template
with a LoraLoaderModelOnly per LoRA chained between the model and the sampler. It names the model files as the
Comfy-Org/z_image_turbo repository splits them (MODEL_FILES), the names ComfyUI's template uses. Torch-free: the
trainer's web process writes one for any render of Try the LoRA; the engine one for a finished job
(trainer.engine.comfy_workflow).
"""

from __future__ import annotations

# folder under ComfyUI/models -> file, as in Comfy-Org/z_image_turbo (split_files/<folder>/<file>)
MODEL_FILES = {"diffusion_models": "z_image_turbo_bf16.safetensors", "text_encoders": "qwen_3_4b.safetensors",
               "vae": "ae.safetensors"}
SHIFT = 3.0  # ModelSamplingAuraFlow, as in ComfyUI's Z-Image-Turbo template
MORE_LORAS = 12  # the node id of a second LoRA loader (the first is "4", as in every workflow written before)


def cfg(guidance: float) -> float:
    """ComfyUI's cfg for the studio's (diffusers') guidance scale: diffusers' Z-Image takes pos + g * (pos - neg), and
    ComfyUI neg + cfg * (pos - neg), so cfg = 1 + g; guidance 0 (Turbo's) is cfg 1, where ComfyUI skips the negative."""
    return 1.0 + max(0.0, float(guidance or 0.0))


def graph(loras: list[tuple[str, float, str]], prompt: str, *, width: int, height: int, seed: int, steps: int,
          prefix: str, guidance: float = 0.0, negative: str = "") -> dict:
    """The graph for `loras` ((file in ComfyUI's loras, strength, title), chained in order); ids are strings, a link
    is [node id, output index]. With `guidance` (the studio's scale, above 0) the sampler runs classifier-free
    guidance against `negative` as the studio's previews and renders did; without, Turbo's template (no CFG)."""
    guided = cfg(guidance) > 1.0
    uncond = ({"class_type": "CLIPTextEncode", "_meta": {"title": "Negative prompt"},
               "inputs": {"text": negative, "clip": ["2", 0]}} if guided
              else {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}})  # Turbo: no CFG
    nodes = {
        "1": {"class_type": "UNETLoader", "_meta": {"title": "Z-Image-Turbo"},
              "inputs": {"unet_name": MODEL_FILES["diffusion_models"], "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "_meta": {"title": "Qwen3-4B text encoder"},
              "inputs": {"clip_name": MODEL_FILES["text_encoders"], "type": "lumina2"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": MODEL_FILES["vae"]}},
    }
    model = ["1", 0]
    for index, (file, strength, title) in enumerate(loras):
        node = "4" if index == 0 else str(MORE_LORAS + index - 1)
        nodes[node] = {"class_type": "LoraLoaderModelOnly", "_meta": {"title": title},
                       "inputs": {"model": model, "lora_name": file, "strength_model": strength}}
        model = [node, 0]
    nodes.update({
        "5": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": model, "shift": SHIFT}},
        "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"},
              "inputs": {"text": prompt, "clip": ["2", 0]}},
        "7": uncond,
        "8": {"class_type": "EmptySD3LatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "9": {"class_type": "KSampler",
              "inputs": {"model": ["5", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["8", 0],
                         "seed": seed, "steps": steps, "cfg": cfg(guidance),
                         "sampler_name": "res_multistep", "scheduler": "simple", "denoise": 1.0}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["3", 0]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": prefix}},
    })
    return nodes
