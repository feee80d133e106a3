"""Preview images during training: fixed prompts and seeds, the training adapter cancelled and CFG
off, so they look like what ComfyUI will render with the finished LoRA.

Each prompt is shown three ways with the same seed, so the effect of the LoRA is visible at a glance:

    samples/base/<i>.png               LoRA off: the Turbo base as ComfyUI renders it (once per job,
                                       before the first step, so the job page shows them at once)
    samples/step_N/<i>.png             LoRA on (the file name older jobs already use)
    samples/step_N/<i>_notrigger.png   LoRA on, trigger word removed from the prompt: does it leak?

The base renders are keyed by prompt, seed, size, steps and guidance, so a changed setting renders
them again; the third column is left out when there is no trigger word to remove. A prompt may carry its own
size, seed, steps, guidance, negative prompt and LoRA strength (trainer.preview_prompts: `--w 832 --h 1216`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from studio.atomic import atomic_write_json
from trainer import leak
from trainer.engine import model as zmodel
from trainer.engine.data import TRIGGER, apply_trigger
from trainer.preview_prompts import PreviewPrompt, parse, preview_prompts

BASE_DIR = "base"
NO_TRIGGER_SUFFIX = "_notrigger"


def previews(config) -> list[PreviewPrompt]:
    """The preview prompts with their options read and the trigger word put in."""
    word = config.trigger_word
    return [replace(p, text=apply_trigger(p.text, word), negative=p.negative.replace(TRIGGER, word))
            for p in preview_prompts(config)]


def sample_texts(config) -> list[str]:
    return [p.text for p in previews(config)]


def without_trigger(text: str, trigger: str) -> str | None:
    """`text` with the trigger word taken out (and the commas/spaces around it tidied); None when there
    is no trigger word or the text does not contain it."""
    if not trigger.strip():
        return None
    pattern = re.compile(rf"(?<!\w){re.escape(trigger.strip())}(?!\w)", re.IGNORECASE)
    if not pattern.search(text):
        return None
    out = pattern.sub(" ", text)
    out = re.sub(r"\s+([,.;:])", r"\1", out)
    out = re.sub(r"([,;:])(\s*[,;:])+", r"\1", out)
    return re.sub(r"\s{2,}", " ", out).strip(" ,;:")


def no_trigger_texts(config) -> list[str | None]:
    return [without_trigger(t, config.trigger_word) for t in sample_texts(config)]


def all_sample_texts(config) -> list[str]:
    """Every prompt a preview needs an embedding for (negative prompts included)."""
    return (sample_texts(config) + [t for t in no_trigger_texts(config) if t is not None]
            + [p.negative for p in previews(config) if p.negative])


def base_key(prompt: PreviewPrompt) -> str:
    basis = [prompt.text, prompt.seed, prompt.width, prompt.height, prompt.steps, prompt.guidance]
    if prompt.negative:
        basis.append(prompt.negative)
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]


@contextlib.contextmanager
def lora_strength(transformer, strength: float):
    """Inside: the trained LoRA acts at `strength` (a preview prompt's --m)."""
    if strength == 1.0:
        yield
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    # a LoRA's and a LoKr's peft layers both multiply their change by `scaling`
    saved = [(m, dict(m.scaling)) for m in transformer.modules() if isinstance(m, BaseTunerLayer)
             and isinstance(getattr(m, "scaling", None), dict)]
    for module, scaling in saved:
        module.scaling.update({name: value * strength for name, value in scaling.items()})
    try:
        yield
    finally:
        for module, scaling in saved:
            module.scaling.update(scaling)


def save_png(image, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shown(prompt: PreviewPrompt, config, index: int) -> dict:
    """A prompt's own settings where they differ from the job's, for prompts.json (the pages show them)."""
    job = parse("", config, index).settings  # what a prompt without options renders with
    own = {key: value for key, value in prompt.settings.items() if value != job[key]}
    if "width" in own or "height" in own:  # a size is shown whole
        own.update(width=prompt.width, height=prompt.height)
    return {"options": own} if own else {}


def _leak(base_path: Path, image, plain_image) -> float | None:
    """trainer.leak's share for one prompt (None when its base picture cannot be read)."""
    from PIL import Image

    try:
        with Image.open(base_path) as base:
            return leak.leak(base, image, plain_image)
    except OSError:
        return None


class Sampler:
    def __init__(self, config, paths, device: torch.device, embeddings: dict[str, torch.Tensor],
                 adapter: zmodel.LoraDelta | None, autocast_dtype: torch.dtype | None):
        self.config, self.paths, self.device = config, paths, device
        self.embeddings, self.adapter, self.autocast_dtype = embeddings, adapter, autocast_dtype
        self._vae = None
        self.renders: Counter[str] = Counter()  # images rendered by kind, for tests and the log

    def _pipeline(self, transformer):
        from diffusers import ZImagePipeline

        if self._vae is None:  # loaded on first use: jobs with previews off never hold the decoder
            self._vae = zmodel.load_vae(self.paths, self.device)
            self._vae.encoder = None  # only the decoder is needed here
        pipe = ZImagePipeline(scheduler=zmodel.load_scheduler(self.paths), vae=self._vae, text_encoder=None,
                              tokenizer=None, transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def lighten(self) -> bool:
        """After running out of memory: decode in tiles from now on (the VAE's peak at 1024 px is several
        GB). False when there is nothing left to lighten."""
        if self._vae is None or getattr(self._vae, "use_tiling", False):
            return False
        self._vae.enable_tiling()
        return True

    @torch.no_grad()
    def _render(self, pipe, transformer, prompt: PreviewPrompt, kind: str, text: str | None = None,
                on_step: Callable[[int, int], None] | None = None):
        """`prompt` (or `text` with its settings) as the transformer draws it now; `on_step(done, steps)` hears of
        each denoising step (an exception it raises ends the picture)."""
        dtype = next(p for p in transformer.parameters() if p.dtype.is_floating_point and p.dtype.itemsize > 1).dtype
        kwargs = {}
        if on_step is not None:
            kwargs["callback_on_step_end"] = lambda _pipe, index, _t, _tensors: on_step(index + 1, prompt.steps) or {}
        if prompt.guidance > 0:
            kwargs["negative_prompt_embeds"] = [self.embeddings[prompt.negative].to(self.device, dtype)]
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            cancelled = zmodel.adapter_cancelled(transformer, self.adapter) if self.adapter else None
            with cancelled or contextlib.nullcontext(), lora_strength(transformer, prompt.strength):
                image = pipe(
                    prompt_embeds=[self.embeddings[prompt.text if text is None else text].to(self.device, dtype)],
                    height=prompt.height,
                    width=prompt.width,
                    num_inference_steps=prompt.steps,
                    guidance_scale=prompt.guidance,
                    generator=torch.Generator("cpu").manual_seed(prompt.seed),
                    **kwargs,
                ).images[0]
        self.renders[kind] += 1
        return image

    @contextlib.contextmanager
    def _eval(self, transformer):
        from trainer.engine.compile_blocks import eager

        was_training = transformer.training
        transformer.eval()
        try:
            with eager():  # compiled blocks would recompile for no_grad and the hooks; previews run eagerly
                yield
        finally:
            transformer.train(was_training)

    def render_image(self, transformer, prompt: PreviewPrompt, kind: str,
                     on_step: Callable[[int, int], None] | None = None):
        """One image of `prompt` (its text an embedding this sampler holds) with the transformer as it is now."""
        with self._eval(transformer):
            return self._render(self._pipeline(transformer), transformer, prompt, kind, on_step=on_step)

    def _check(self) -> None:
        """Between two pictures: `stop_check` (set by the training run) ends the previews when a stop was asked."""
        check = getattr(self, "stop_check", None)
        if check is not None:
            check()

    def render_base(self, transformer, job_dir: Path) -> list[str]:
        """ensure_base on its own (before training starts), with the transformer set up for rendering."""
        with self._eval(transformer):
            return self.ensure_base(transformer, job_dir)

    def ensure_base(self, transformer, job_dir: Path) -> list[str]:
        """samples/base/<i>.png for every prompt, rendered with the LoRA off unless an image for the same
        prompt, seed and settings is already there. Returns each prompt's base key."""
        cfg = self.config
        folder = Path(job_dir) / "samples" / BASE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        index_path = folder / "prompts.json"
        try:
            known = {int(p["index"]): p for p in json.loads(index_path.read_text("utf-8"))["prompts"]}
        except (OSError, ValueError, KeyError, TypeError):
            known = {}
        entries, keys, pipe = [], [], None
        for index, prompt in enumerate(previews(cfg)):
            self._check()
            key = base_key(prompt)
            image_path = folder / f"{index}.png"
            if known.get(index, {}).get("key") != key or not image_path.is_file():
                pipe = pipe or self._pipeline(transformer)
                transformer.disable_adapters()  # our LoRA off; the training adapter is cancelled in _render
                try:
                    image = self._render(pipe, transformer, prompt, "base")
                finally:
                    transformer.enable_adapters()
                save_png(image, image_path)
            entries.append({"index": index, "prompt": prompt.text, "seed": prompt.seed, "key": key,
                            "file": image_path.name, **_shown(prompt, cfg, index)})
            keys.append(key)
        atomic_write_json(index_path, {"prompts": entries})
        return keys

    def save(self, transformer, job_dir: Path, step: int) -> Path:
        """Render one preview step: base (if not cached), LoRA on, LoRA without the trigger word."""
        cfg = self.config
        root = Path(job_dir) / "samples"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step_{step:06d}"
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
        try:
            with self._eval(transformer):
                keys = self.ensure_base(transformer, job_dir)
                pipe = self._pipeline(transformer)
                prompts = []
                for index, (prompt, plain) in enumerate(zip(previews(cfg), no_trigger_texts(cfg), strict=True)):
                    self._check()
                    image = self._render(pipe, transformer, prompt, "lora")
                    image.save(tmp / f"{index}.png")
                    plain_file, share = None, None
                    if plain is not None:
                        plain_file = f"{index}{NO_TRIGGER_SUFFIX}.png"
                        plain_image = self._render(pipe, transformer, prompt, "lora_no_trigger", text=plain)
                        plain_image.save(tmp / plain_file)
                        share = _leak(root / BASE_DIR / f"{index}.png", image, plain_image)
                    prompts.append({"index": index, "prompt": prompt.text, "seed": prompt.seed,
                                    "no_trigger_prompt": plain, "lora": f"{index}.png", "lora_no_trigger": plain_file,
                                    "base": f"../{BASE_DIR}/{index}.png", "base_key": keys[index], "leak": share,
                                    **_shown(prompt, cfg, index)})
            (tmp / "prompts.json").write_text(json.dumps({"step": step, "prompts": prompts}, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
