"""Output preservation (`preserve_class`): the LoRA learns the trigger word and leaves the class alone.

A LoRA trained on photos of one person, captioned "zkw, a woman in a red coat", learns "woman" too: every
woman it draws afterwards looks a little like her, with or without the trigger word. With a class word
("woman"), each step also runs the caption with the class word in place of the trigger word ("woman, a
woman in a red coat") on the same noisy latent twice: once without the LoRA (the base model as training
sees it, the training adapter merged; no gradient) and once with it, and trains the LoRA to make the two
agree. The trigger word keeps what the images teach; the class word keeps the base model's answer. This is
what ai-toolkit calls differential output preservation; it costs a forward pass without gradient and a
forward and backward pass more per step.

An example whose caption holds no trigger word (a dataset without one) is left out of the extra pass; a
micro-batch with none of them costs nothing extra. The extra pass draws no random numbers, so a job
resumes bit-exact with it on.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import torch


def _word(text: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(text.strip())}(?!\w)", re.IGNORECASE)


def class_caption(caption: str, triggers: list[str], word: str) -> str | None:
    """`caption` with each trigger word (whole words, any case) replaced by the class `word`; None when it
    holds none of them. Longer trigger words go first, so "zkw dog" wins over "zkw"."""
    out = caption
    for trigger in sorted({t.strip() for t in triggers if t.strip()}, key=len, reverse=True):
        out = _word(trigger).sub(lambda _match: word.strip(), out)
    return out if out != caption else None


@contextlib.contextmanager
def lora_off(transformer) -> Iterator[None]:
    """The transformer without the trainable LoRA (the merged training adapter stays)."""
    transformer.disable_adapters()
    try:
        yield
    finally:
        transformer.enable_adapters()


class OutputPreservation:
    """The class captions of a job's training examples and the loss that keeps the LoRA off them."""

    def __init__(self, word: str, texts: list[str | None], weight: float):
        self.word, self.texts, self.weight = word, texts, weight

    @classmethod
    def for_run(cls, config, samples, triggers: list[str], log: Callable[[str], None]) -> OutputPreservation | None:
        """None when `preserve_class` is off (or its weight 0), or cannot work here (said in the log)."""
        word = (getattr(config, "preserve_class", "") or "").strip()
        if not word or not config.preserve_weight:
            return None
        if word.lower() in {t.strip().lower() for t in triggers}:
            log(f"Preserve the class: '{word}' is a trigger word of this job, so it is off (use the class the subject "
                "belongs to).")
            return None
        texts = [class_caption(sample.item.caption, triggers, word) for sample in samples]
        covered = len({s.item.path for s, t in zip(samples, texts, strict=True) if t is not None})
        images = len({s.item.path for s in samples})
        if not covered:
            log(f"Preserve the class: no caption holds a trigger word to put '{word}' in place of, so it is off "
                "(set a trigger word).")
            return None
        left = f"; {images - covered} image(s) without a trigger word train as usual" if covered < images else ""
        log(f"Preserve the class: every step also keeps what the base model draws for '{word}' (captions with "
            f"'{word}' in place of the trigger word, weight {config.preserve_weight:g}) on {covered} image(s){left}."
            " A step takes about 2.4 times as long.")
        return cls(word, texts, float(config.preserve_weight))

    def captions(self) -> list[str]:
        """The class captions to encode with the others."""
        return list(dict.fromkeys(t for t in self.texts if t is not None))

    def loss(self, loop, batch: list[int], x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor,
             weight: torch.Tensor) -> torch.Tensor | None:
        """The preservation loss of one micro-batch (averaged over the whole micro-batch, as the flow loss is),
        or None when no example in it has a class caption. `x0`, `noise`, `sigma`, `weight`: the training
        pass's own, so both passes see the same noisy latent."""
        rows = [k for k, index in enumerate(batch) if self.texts[index] is not None]
        if not rows:
            return None
        picked = torch.tensor(rows, device=x0.device)
        embeds = [loop.data.embedding(self.texts[batch[k]]) for k in rows]
        x_t = loop.noised(x0.index_select(0, picked), noise.index_select(0, picked), sigma.index_select(0, picked))
        t = sigma.index_select(0, picked)
        with torch.no_grad(), lora_off(loop.transformer):
            target = loop.predict(x_t, t, embeds)
        per_example = ((loop.predict(x_t, t, embeds) - target) ** 2).mean(dim=(1, 2, 3))
        return self.weight * (per_example * weight.index_select(0, picked)).sum() / len(batch)
