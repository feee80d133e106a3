"""The LoRA file's metadata: the studio's own keys (base model, rank, targets, trigger words, what it
trained on and from), then the modelspec.* and ss_* keys that LoRA managers, ComfyUI extensions and model
sites read. All values are strings, as safetensors requires."""

from __future__ import annotations

import json
import re
import time

from trainer.engine import model as zmodel
from trainer.engine.data import dataset_name


def lora_metadata(config, paths, data_hash: str, items, sources, triggers: list[str] | None = None,
                  preserved: str = "", optimizer: type | None = None) -> dict[str, str]:
    """safetensors metadata (all strings); `preserved`: the class word kept as the base model draws it
    (preserve_class), if the run used one; `optimizer`: the optimizer's class. The LoRA never includes the
    training adapter. Then the modelspec.* and ss_* keys that LoRA managers, ComfyUI extensions and model sites
    read to show the base model, the title, the trigger word and how it was trained (kohya's names; the steps
    trained, ss_steps, are added where a file is written)."""
    trigger = config.trigger_word.strip()
    words = list(dict.fromkeys(w.strip() for w in (triggers or [trigger]) if w.strip()))  # several concepts
    phrase = ", ".join(words)
    side = max(config.resolutions)
    images = sum(item.repeats for item in items)  # as kohya counts it: each image times its repeats
    folders = {dataset_name(s.folder): {"n_repeats": s.repeats,
                                        "img_count": sum(item.path.parent == s.folder for item in items)}
               for s in sources}
    return {
        "format": "pt",
        "name": config.name,
        "base_model": zmodel.BASE_REPO,
        "architecture": "zimage",
        **network_keys(config),
        "lora_targets": getattr(config, "lora_targets", "all"),
        "resolution": json.dumps(config.resolutions),
        "trigger_word": config.trigger_word,
        **({"trigger_words": json.dumps(words)} if len(words) > 1 else {}),
        "dataset_hash": data_hash,
        "learning_rate": f"{config.learning_rate:g}",
        "seed": str(config.seed),
        "dtype": config.save_dtype,
        "training_adapter": f"{zmodel.ADAPTER_REPO} merged during training, not included",
        **({"started_from": config.init_lora} if getattr(config, "init_lora", "") else {}),
        **({"preserved_class": preserved} if preserved else {}),
        "demo": str(bool(getattr(paths, "demo", False))).lower(),
        "software": "Z-Image Studio",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "z-image-turbo/lora",
        "modelspec.title": config.name,
        "modelspec.resolution": f"{side}x{side}",
        "modelspec.date": time.strftime("%Y-%m-%d", time.gmtime()),
        **({"modelspec.trigger_phrase": phrase} if phrase else {}),
        "ss_base_model_version": "z-image-turbo",
        "ss_output_name": config.name,
        "ss_num_train_images": str(images),
        "ss_dataset_dirs": json.dumps(folders),
        **({"ss_tag_frequency": json.dumps({config.name: trigger_counts(items, words)})} if words else {}),
        **kohya_network_keys(config),
        "ss_learning_rate": f"{config.learning_rate:g}",
        **({"ss_optimizer": f"{optimizer.__module__}.{optimizer.__name__}"} if optimizer else {}),
        "ss_lr_scheduler": config.lr_schedule,
        "ss_lr_warmup_steps": str(config.warmup_steps),
        "ss_max_train_steps": str(config.steps),
        "ss_resolution": f"({side}, {side})",
        "ss_batch_size_per_device": str(config.batch_size),
        "ss_gradient_accumulation_steps": str(config.gradient_accumulation),
        "ss_caption_dropout_rate": f"{config.caption_dropout:g}",
        "ss_seed": str(config.seed),
    }


def trigger_counts(items, words: list[str]) -> dict[str, int]:
    """How many training images (with repeats) each trigger word's captions have."""
    return {word: sum(item.repeats for item in items if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", item.caption,
                                                              re.IGNORECASE)) for word in words}


def _lokr(config) -> bool:
    return getattr(config, "network", "lora") == "lokr"


def network_keys(config) -> dict[str, str]:
    """What was trained: a LoRA's rank and alpha, or a LoKr's factor."""
    if _lokr(config):
        return {"network": "lokr", "lokr_factor": str(config.lokr_factor)}
    return {"lora_rank": str(config.rank),
            "lora_alpha": str(config.rank),  # alpha / rank is folded into lora_B, so loaders use alpha = rank
            "training_alpha": f"{config.lora_alpha:g}"}


def kohya_network_keys(config) -> dict[str, str]:
    """kohya's ss_network_* keys; a LoKr as LyCORIS' kohya network writes them (full matrices, scale 1)."""
    if _lokr(config):
        args = {"algo": "lokr", "factor": str(config.lokr_factor), "full_matrix": "True"}
        return {"ss_network_module": "lycoris.kohya", "ss_network_dim": "100000", "ss_network_alpha": "100000",
                "ss_network_args": json.dumps(args)}
    return {"ss_network_module": "networks.lora", "ss_network_dim": str(config.rank),
            "ss_network_alpha": str(config.rank)}  # as lora_alpha: the training alpha is folded into lora_B
