"""SimpleTuner's own Z-Image transformer class (PyPI `simpletuner`), for the peer column.

SimpleTuner's trainer cannot run on the offline GPU machine: its package `__init__` imports every model
family, and its requirements pull in some fifty packages (wandb, spacy, deepspeed, torchaudio,
torchcodec and more) whose binary wheels must match that machine's CUDA build of torch. What can run
is its Z-Image model class, `simpletuner/helpers/models/z_image/transformer.py`, which needs only
diffusers and its own `training/tread.py`. We load those two files straight from the installed
package (without its `__init__`) and give the class the same random weights as ours; the training
step around it is the one SimpleTuner's `ZImage.model_predict` performs (list of latents, t = 1 - sigma,
negated output).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch

FILES = {"simpletuner.helpers.training.tread": "helpers/training/tread.py",
         "simpletuner.helpers.models.z_image.transformer": "helpers/models/z_image/transformer.py"}


def package_root() -> Path | None:
    loaded = sys.modules.get("simpletuner")  # our stub, once transformer_class() ran
    if loaded is not None and getattr(loaded, "__path__", None):
        return Path(list(loaded.__path__)[0])
    spec = importlib.util.find_spec("simpletuner")  # finds the folder without running its __init__
    return Path(spec.origin).parent if spec and spec.origin else None


def transformer_class():
    root = package_root()
    if root is None:
        raise ImportError("simpletuner is not installed (carry its wheel: benchmarks/gpu_wheels.txt)")
    for name in ("simpletuner", "simpletuner.helpers", "simpletuner.helpers.training", "simpletuner.helpers.models",
                 "simpletuner.helpers.models.z_image"):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = stub
    for name, relative in FILES.items():
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, root / relative)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return sys.modules["simpletuner.helpers.models.z_image.transformer"].ZImageTransformer2DModel


def make_model(shape: dict, device: torch.device, dtype: torch.dtype):
    """SimpleTuner's class holding the same random weights as the diffusers model built with seed 0."""
    from benchmarks.zimage_runs import build_transformer

    cls = transformer_class()
    reference = build_transformer(shape, device, dtype)
    with torch.device("meta"):
        model = cls(**shape)
    missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False, assign=True)
    del reference
    if missing or unexpected:
        raise RuntimeError(f"SimpleTuner's Z-Image class does not take diffusers' weights ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[:2]})")
    model.requires_grad_(False)
    return model
