"""What a job trains, by its config's `network`: a LoRA (peft, trainer.engine.model) or a LyCORIS LoKr
(trainer.engine.lokr_train). The training run asks here, so it never tells the two apart itself."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from trainer.engine import lokr_train
from trainer.engine import model as zmodel
from trainer.engine.lokr import KronDelta


def is_lokr(config) -> bool:
    return getattr(config, "network", "lora") == "lokr"


def add_network(transformer: nn.Module, config) -> tuple[list[nn.Parameter], str]:
    """The trainable weights added to the transformer, and how the log names them."""
    targets = getattr(config, "lora_targets", "all")
    if is_lokr(config):
        params = lokr_train.add_lokr(transformer, config.lokr_factor, config.seed, targets)
        return params, f"LoKr factor {config.lokr_factor} on {targets} layers"
    params = zmodel.add_lora(transformer, config.rank, config.lora_alpha, config.seed, targets)
    return params, f"LoRA rank {config.rank}, alpha {config.lora_alpha:g} on {targets} layers"


def file_tensors(transformer: nn.Module, config) -> dict:
    """The file's tensors as the trainable weights are now, in ComfyUI's names."""
    if is_lokr(config):
        return lokr_train.lokr_state_dict(transformer, zmodel.SAVE_DTYPES[config.save_dtype])
    return zmodel.lora_state_dict(transformer, config.rank, config.lora_alpha, config.save_dtype)


def start_from_file(transformer: nn.Module, config, path: Path, label: str) -> int:
    """The trainable weights set to a file's (a LoRA for a LoRA, a LoKr for a LoKr); how many layers were set."""
    if is_lokr(config):
        return lokr_train.start_from_lokr(transformer, KronDelta.load(path, label), config.lokr_factor)
    return zmodel.start_from(transformer, zmodel.LoraDelta.load(path, label), config.rank, config.lora_alpha)
