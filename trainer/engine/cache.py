"""Latents and text embeddings computed once and kept on disk, keyed by content hash + model +
resolution, so a resumed or repeated job never runs the VAE encoder or the text encoder again."""

from __future__ import annotations

import gc
import hashlib
import os
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import torch

from studio.ahead import in_order
from trainer.engine import model as zmodel
from trainer.engine.data import Sample, load_pixels
from trainer.engine.masks import load_mask

CACHE_VERSION = "2"  # 2: pictures with a colour profile are read in sRGB


class TensorCache:
    """One safetensors file per entry, written atomically; unreadable entries count as missing."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def get(self, kind: str, key: str) -> torch.Tensor | None:
        from safetensors.torch import load_file

        path = self._path(kind, key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["value"]
        except Exception:  # a damaged entry is recomputed rather than trusted
            path.unlink(missing_ok=True)
            return None

    def put(self, kind: str, key: str, value: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        os.close(fd)
        try:
            save_file({"value": value.contiguous()}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _key(*parts: str) -> str:
    return hashlib.sha256("|".join((CACHE_VERSION, *parts)).encode()).hexdigest()


@dataclass
class CachedData:
    latents: list[torch.Tensor]  # per sample, [16, h, w] float32
    embeddings: dict[str, torch.Tensor]  # caption or prompt -> [L, cap_dim] float32
    masks: list[torch.Tensor | None] = field(default_factory=list)  # alpha_mask: per sample [1, h, w], or none
    encoder_calls: dict[str, int] = field(default_factory=lambda: {"text_encoder": 0, "vae_encoder": 0})


def _count_calls(module: torch.nn.Module, counter: dict[str, int], name: str):
    def hook(*_args):
        counter[name] += 1

    return module.register_forward_hook(hook)


def prepare(samples: list[Sample], texts: list[str], paths, device: torch.device, text_dtype: torch.dtype,
            cache_dir: Path, report: Callable[[str, int, int], None], alpha_mask: bool = False) -> CachedData:
    """Latents for every sample and embeddings for every text, from the disk cache or computed once.
    The VAE and the text encoder are loaded only when something is missing and freed afterwards. With
    `alpha_mask`, each sample's alpha mask on its latent grid (None for an opaque image; cheap, not cached)."""
    cache = TensorCache(cache_dir)
    data = CachedData(latents=[], embeddings={})
    root = Path(paths.zimage_dir)

    vae_id = zmodel.model_fingerprint(root / "vae")
    keys = [_key("latent", s.item.sha256, vae_id, f"{s.bucket[0]}x{s.bucket[1]}", *(["mirrored"] if s.flip else []))
            for s in samples]
    found = [cache.get("latents", k) for k in keys]
    missing = [i for i, t in enumerate(found) if t is None]
    if missing:
        vae = zmodel.load_vae(paths, device)
        handle = _count_calls(vae.encoder, data.encoder_calls, "vae_encoder")
        from diffusers.image_processor import VaeImageProcessor

        processor = VaeImageProcessor(vae_scale_factor=16)

        def pixels_of(index: int):
            return index, processor.preprocess(load_pixels(samples[index]))

        # the next pictures are decoded and resized on other cores while the VAE encodes this one
        with closing(in_order(pixels_of, missing, name="latents")) as loaded:
            for done, (index, pixels) in enumerate(loaded):
                found[index] = zmodel.encode_image(vae, pixels)
                cache.put("latents", keys[index], found[index])
                report("latents", done + 1, len(missing))
        handle.remove()
        del vae
    data.latents = found
    if alpha_mask:
        data.masks = [load_mask(sample, tuple(latent.shape[-2:])) for sample, latent in zip(samples, found,
                                                                                             strict=True)]

    te_id = zmodel.model_fingerprint(root / "text_encoder") + zmodel.model_fingerprint(root / "tokenizer")
    unique = list(dict.fromkeys(texts))
    text_keys = {t: _key("text", t, te_id, str(zmodel.MAX_SEQUENCE_LENGTH)) for t in unique}
    for text in unique:
        value = cache.get("text", text_keys[text])
        if value is not None:
            data.embeddings[text] = value
    todo = [t for t in unique if t not in data.embeddings]
    if todo:
        tokenizer, encoder = zmodel.load_text_encoder(paths, device, text_dtype)
        handle = _count_calls(encoder, data.encoder_calls, "text_encoder")
        batch = 8
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            for text, emb in zip(chunk, zmodel.encode_prompts(tokenizer, encoder, chunk), strict=True):
                data.embeddings[text] = emb
                cache.put("text", text_keys[text], emb)
            report("captions", min(start + batch, len(todo)), len(todo))
        handle.remove()
        del encoder, tokenizer
    free_memory(device)
    return data


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
