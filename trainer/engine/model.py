"""Loading Z-Image-Turbo from STUDIO_ROOT/models, prompt encoding, the training adapter and the LoRA."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainer.engine.errors import TrainingError
from trainer.lora_file import BASE_REPO, LORA_TARGET, LORA_TARGETS, LoraFileError, lokr_modules, read_header

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from local folders
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ADAPTER_REPO = "ostris/zimage_turbo_training_adapter"
COMFY_PREFIX = "diffusion_model."
MAX_SEQUENCE_LENGTH = 512  # ZImagePipeline's default


def _missing(path: Path, repo: str) -> TrainingError:
    return TrainingError(f"Model file {path} is missing; it is listed in models.txt as {repo}, so let the "
                         "model download finish (or run it again) and retry.")


def check_model_files(paths, adapter: bool = True) -> None:
    """Fail early, naming the first missing file and the models.txt line that provides it (the training
    adapter too unless `adapter` is False: rendering does not use it)."""
    root = Path(paths.zimage_dir)
    required = [root / "model_index.json", root / "scheduler" / "scheduler_config.json"]
    for sub in ("transformer", "text_encoder", "vae"):
        required.append(root / sub / "config.json")
    required.append(root / "tokenizer")
    for path in required:
        if not path.exists():
            raise _missing(path, BASE_REPO)
    for sub in ("transformer", "text_encoder", "vae"):
        if not any((root / sub).glob("*.safetensors")):
            raise _missing(root / sub / "diffusion_pytorch_model.safetensors", BASE_REPO)
    if adapter and not Path(paths.training_adapter).is_file():
        raise _missing(Path(paths.training_adapter), ADAPTER_REPO)


def model_fingerprint(folder: Path) -> str:
    """Identifies a model's weights for the cache: config text plus weight file names, sizes and mtimes."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
            if path.suffix == ".json":
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_text_encoder(paths, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModel, AutoTokenizer

    root = Path(paths.zimage_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    encoder = AutoModel.from_pretrained(str(root / "text_encoder"), dtype=dtype).to(device).eval()
    encoder.requires_grad_(False)
    return tokenizer, encoder


@torch.no_grad()  # with grad on, a cached embedding would keep its graph and break the second backward()
def encode_prompts(tokenizer, encoder, prompts: list[str]) -> list[torch.Tensor]:
    """Exactly ZImagePipeline._encode_prompt: chat template, Qwen3 hidden_states[-2], padding dropped."""
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True,
                                      enable_thinking=True)
        for p in prompts
    ]
    tokens = tokenizer(texts, padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True,
                       return_tensors="pt")
    device = next(encoder.parameters()).device
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device).bool()
    hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
    return [hidden[i][mask[i]].float().cpu() for i in range(len(prompts))]


def load_vae(paths, device: torch.device):
    from diffusers import AutoencoderKL

    # float32 always: the VAE is small and its encoder/decoder are sensitive to bf16 (force_upcast)
    vae = AutoencoderKL.from_pretrained(str(Path(paths.zimage_dir) / "vae"), dtype=torch.float32)
    vae.requires_grad_(False)
    return vae.to(device).eval()


@torch.no_grad()
def encode_image(vae, pixels: torch.Tensor) -> torch.Tensor:
    """[1,3,H,W] in [-1,1] -> [16,H/8,W/8] scaled as the pipeline expects. The posterior mean, so the
    cached latent is deterministic."""
    latent = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    return ((latent - vae.config.shift_factor) * vae.config.scaling_factor)[0].float().cpu()


def load_transformer(paths, device: torch.device, dtype: torch.dtype):
    from diffusers import ZImageTransformer2DModel

    model = ZImageTransformer2DModel.from_pretrained(str(Path(paths.zimage_dir) / "transformer"), dtype=dtype)
    model.requires_grad_(False)
    return model.to(device)


def load_scheduler(paths):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_pretrained(str(Path(paths.zimage_dir) / "scheduler"))


# ---------------------------------------------------------------- training adapter
class LoraDelta:
    """A LoRA file held as (down, up, scale) per module name of the diffusers transformer."""

    def __init__(self, modules: dict[str, tuple[torch.Tensor, torch.Tensor, float]],
                 label: str = "The training adapter"):
        self.modules = modules
        self.label = label  # how errors name it

    @classmethod
    def load(cls, path: Path, label: str | None = None) -> LoraDelta:
        """`label` names the file in errors ("The LoRA file step_000500/lora.safetensors"); without one it
        is the training adapter, and the errors say how to fetch it again."""
        from safetensors.torch import load_file

        fix = "" if label else f"; delete it and let the download ({ADAPTER_REPO} in models.txt) run again"
        label = label or f"The training adapter {path}"
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise TrainingError(f"{label} cannot be read ({exc}){fix}.") from exc
        modules = {}
        for key, down in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            name = key[: -len(".lora_A.weight")]
            up = tensors.get(f"{name}.lora_B.weight")
            if up is None:
                raise TrainingError(f"{label} has {key} without its lora_B half{fix}.")
            alpha = tensors.get(f"{name}.alpha")
            scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
            for prefix in (COMFY_PREFIX, "transformer."):
                if name.startswith(prefix):
                    name = name[len(prefix) :]
            modules[name] = (down.float(), up.float(), scale)
        if not modules:
            raise TrainingError(f"{label} holds no LoRA weights{fix}.")
        return cls(modules, label)

    def delta(self, name: str) -> torch.Tensor:
        down, up, scale = self.modules[name]
        return (up @ down) * scale

    def shape(self, name: str) -> tuple[int, int]:
        """(in, out) features of the module's Linear."""
        down, up, _scale = self.modules[name]
        return down.shape[1], up.shape[0]

    def hook(self, name: str, device: torch.device, weight: float):
        """A forward hook adding `weight` times the module's change to its output (x · downᵀ · upᵀ)."""
        down, up, scale = self.modules[name]
        d, u = down.to(device), (up * (scale * weight)).to(device)  # the strength folded into the up weights

        def hook(_module, args, output):
            return output + F.linear(F.linear(args[0].float(), d), u).to(output.dtype)

        return hook


def load_adapter_file(path: Path, label: str):
    """A LoRA file to apply (LoraDelta), or a LyCORIS LoKr one (trainer.engine.lokr.KronDelta), by its keys."""
    from trainer.engine.lokr import KronDelta

    try:
        header = read_header(path)
    except LoraFileError as exc:
        raise TrainingError(f"{label} cannot be read ({exc}).") from exc
    return KronDelta.load(path, label) if lokr_modules(header) else LoraDelta.load(path, label)


def _linear(model: nn.Module, name: str) -> nn.Linear:
    module = model.get_submodule(name)
    base = getattr(module, "base_layer", module)  # after peft wrapping
    if not isinstance(base, nn.Linear):
        raise TrainingError(f"The training adapter does not fit this transformer (module {name} is not a Linear).")
    return base


@torch.no_grad()
def merge_adapter(model: nn.Module, adapter: LoraDelta, weight: float = 1.0) -> None:
    """W += weight * up @ down * scale for every adapter module (weight=-1 takes it back out)."""
    for name in adapter.modules:
        try:
            linear = _linear(model, name)
        except AttributeError as exc:
            raise TrainingError(f"The training adapter names {name}, which this transformer does not have; "
                                f"it is not an adapter for {BASE_REPO}.") from exc
        delta = adapter.delta(name).to(linear.weight.device)
        if delta.shape != linear.weight.shape:
            raise TrainingError(f"The training adapter does not fit this transformer ({name}: {tuple(delta.shape)} "
                                f"vs {tuple(linear.weight.shape)}).")
        linear.weight.copy_((linear.weight.float() + weight * delta).to(linear.weight.dtype))


def _adapter_module(model: nn.Module, adapter: LoraDelta, name: str) -> nn.Module:
    """The module an adapter entry applies to, checked to have the entry's shape."""
    features = adapter.shape(name)
    try:
        module = model.get_submodule(name)
    except AttributeError as exc:
        raise TrainingError(f"{adapter.label} names {name}, which this transformer does not have; it is "
                            f"not a LoRA for {BASE_REPO}.") from exc
    fits = (getattr(module, "in_features", None), getattr(module, "out_features", None))
    if fits != features:
        raise TrainingError(f"{adapter.label} does not fit this transformer ({name}: {features[0]} in, "
                            f"{features[1]} out; the model has {fits[0]} in, {fits[1]} out).")
    return module


def check_fits(model: nn.Module, adapter: LoraDelta) -> None:
    """Raise TrainingError unless every module of the adapter exists in `model` with its shape."""
    for name in adapter.modules:
        _adapter_module(model, adapter, name)


@contextmanager
def adapter_applied(model: nn.Module, adapter: LoraDelta, weight: float) -> Iterator[None]:
    """Run `model` with `weight` times the adapter added to each of its modules' outputs, without
    touching the weights: a LoRA file tried at several strengths, or (weight -1) a merged adapter taken
    back out. Works with 8-bit base weights too."""
    handles = []
    for name in adapter.modules:
        module = _adapter_module(model, adapter, name)
        handles.append(module.register_forward_hook(adapter.hook(name, next(module.parameters()).device, weight)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def adapter_cancelled(model: nn.Module, adapter: LoraDelta):
    """Run `model` as if the merged adapter were not there (what ComfyUI will show)."""
    return adapter_applied(model, adapter, -1.0)


# ---------------------------------------------------------------- trainable LoRA
@functools.cache  # one class, made when peft is first needed (importing it is slow)
def _autocast_lora_linear():
    from peft.tuners.lora.layer import Linear as PeftLoraLinear

    class AutocastLoraLinear(PeftLoraLinear):
        """peft's LoRA Linear, minus the float32 copy of its input under autocast. peft casts the input to the
        LoRA weights' dtype (float32 here); autocast then casts it back to bf16 for the product, so each LoRA
        layer kept its own bf16 copy of an input the base layer already has (0.12 GiB of 1.30 per full-size block
        at 1024 px) and paid two conversions each way. Under autocast the product takes the input as it comes:
        the same bf16 values, so the same result bit for bit."""

        def _cast_input_dtype(self, x, dtype):
            if isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type):
                return x
            return super()._cast_input_dtype(x, dtype)

    return PeftLoraLinear, AutocastLoraLinear


def add_lora(model: nn.Module, rank: int, alpha: float, seed: int, targets: str = "all") -> list[nn.Parameter]:
    from peft import LoraConfig

    # the LoRA init draws from the global RNG: seed it so a job is reproducible
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True,
                                     target_modules=LORA_TARGETS[targets]))
    peft_linear, autocast_linear = _autocast_lora_linear()
    for module in model.modules():
        if type(module) is peft_linear:
            module.__class__ = autocast_linear  # adds no state: only where the input is cast
    params = []
    for name, param in model.named_parameters():
        if ".lora_" in name:
            param.data = param.data.float()  # trainable weights stay float32 under bf16 autocast
            param.requires_grad_(True)
            params.append(param)
    return params


@torch.no_grad()
def start_from(model: nn.Module, lora: LoraDelta, rank: int, alpha: float) -> int:
    """Set the trainable LoRA (added by add_lora) to a LoRA file's weights, so training goes on from it;
    modules the file leaves out start from zero as usual. Returns how many modules were set."""
    scale = alpha / rank  # peft multiplies B @ A by it; the file's own scale is folded into B here
    for name, (down, up, file_scale) in lora.modules.items():
        module = _adapter_module(model, lora, name)
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            raise TrainingError(f"{lora.label} trains {name}, which this job's LoRA layers leave out: set LoRA "
                                "layers to all.")
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        if a.shape != down.shape or b.shape != up.shape:
            raise TrainingError(f"{lora.label} has rank {down.shape[0]} at {name}, this job {a.shape[0]}: set the "
                                f"LoRA rank to {down.shape[0]}.")
        a.copy_(down.to(a.device, a.dtype))
        b.copy_((up * (file_scale / scale)).to(b.device, b.dtype))
    return len(lora.modules)


SAVE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def lora_state_dict(model: nn.Module, rank: int, alpha: float, dtype: str = "fp32") -> dict[str, torch.Tensor]:
    """ComfyUI / ai-toolkit keys (`diffusion_model.layers.N.<module>.lora_A.weight`), alpha folded into
    lora_B because those loaders assume alpha == rank; stored as `dtype` (a SAVE_DTYPES key), scaled first."""
    from peft.utils import get_peft_model_state_dict

    scale = alpha / rank
    out = {}
    for key, value in get_peft_model_state_dict(model).items():
        value = value.detach().to("cpu", torch.float32, copy=True)  # never a view of the live weights
        if ".lora_B." in key and scale != 1.0:
            value = value * scale
        out[COMFY_PREFIX + key] = value.to(SAVE_DTYPES[dtype]).contiguous()
    return out


def raw_lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors as they are (for exact resume)."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_raw_lora_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise TrainingError("The checkpoint does not match this job's LoRA settings (rank or targets changed); "
                            "start a new job instead of resuming.")


def lora_module_names() -> re.Pattern:
    return re.compile(LORA_TARGET)
