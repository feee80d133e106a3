"""Preview images during training: fixed prompts and seeds, the training adapter cancelled and CFG
off, so they look like what ComfyUI will render with the finished LoRA."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from trainer.engine import model as zmodel
from trainer.engine.data import apply_trigger


def sample_texts(config) -> list[str]:
    return [apply_trigger(p, config.trigger_word) for p in config.sample_prompts]


class Sampler:
    def __init__(self, config, paths, device: torch.device, embeddings: dict[str, torch.Tensor],
                 adapter: zmodel.LoraDelta | None, autocast_dtype: torch.dtype | None):
        self.config, self.paths, self.device = config, paths, device
        self.embeddings, self.adapter, self.autocast_dtype = embeddings, adapter, autocast_dtype
        self._vae = None

    def _pipeline(self, transformer):
        from diffusers import ZImagePipeline

        if self._vae is None:  # loaded on first use: jobs with previews off never hold the decoder
            self._vae = zmodel.load_vae(self.paths, self.device)
            self._vae.encoder = None  # only the decoder is needed here
        pipe = ZImagePipeline(scheduler=zmodel.load_scheduler(self.paths), vae=self._vae, text_encoder=None,
                              tokenizer=None, transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @torch.no_grad()
    def render(self, transformer) -> list:
        """PIL images, one per sample prompt."""
        cfg = self.config
        pipe = self._pipeline(transformer)
        dtype = next(p for p in transformer.parameters() if p.dtype.is_floating_point and p.dtype.itemsize > 1).dtype
        was_training = transformer.training
        transformer.eval()
        images = []
        try:
            for index, text in enumerate(sample_texts(cfg)):
                kwargs = {}
                if cfg.guidance_scale > 0:
                    kwargs["negative_prompt_embeds"] = [self.embeddings[""].to(self.device, dtype)]
                with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                    enabled=self.autocast_dtype is not None):
                    cancelled = zmodel.adapter_cancelled(transformer, self.adapter) if self.adapter else None
                    with cancelled or contextlib.nullcontext():
                        image = pipe(
                            prompt_embeds=[self.embeddings[text].to(self.device, dtype)],
                            height=cfg.sample_height,
                            width=cfg.sample_width,
                            num_inference_steps=cfg.sample_steps,
                            guidance_scale=cfg.guidance_scale,
                            generator=torch.Generator("cpu").manual_seed(cfg.seed + index),
                            **kwargs,
                        ).images[0]
                images.append(image)
        finally:
            transformer.train(was_training)
        return images

    def save(self, transformer, job_dir: Path, step: int) -> Path:
        images = self.render(transformer)
        root = Path(job_dir) / "samples"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step_{step:06d}"
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
        try:
            for index, image in enumerate(images):
                image.save(tmp / f"{index}.png")
            prompts = [{"index": i, "prompt": t, "seed": self.config.seed + i}
                       for i, t in enumerate(sample_texts(self.config))]
            (tmp / "prompts.json").write_text(json.dumps({"step": step, "prompts": prompts}, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

