"""A tiny, randomly initialised Z-Image-Turbo pipeline and training adapter, built offline.

`write_tiny_zimage(out_dir)` writes the real diffusers layout of Tongyi-MAI/Z-Image-Turbo
(model_index.json, transformer/, text_encoder/, tokenizer/, vae/, scheduler/) with the real classes, only
tiny. `write_tiny_training_adapter(pipeline_dir, out_file)` writes a small LoRA in the same key format as
ostris' zimage_turbo_training_adapter v2 (ai-toolkit's peft format with a `diffusion_model.` prefix) for
that transformer. Both are deterministic: two builds give byte-identical files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

# Only sizes differ from the real model's configs; the keys are the same.
TRANSFORMER_CONFIG = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 64,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 2,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 32,  # must equal the text encoder hidden_size
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [8, 12, 12],  # sum == dim // n_heads, same split as the real [32, 48, 48]
    "axes_lens": [1536, 512, 512],  # real values; only a RoPE table, no weights
}

TEXT_ENCODER_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,  # the pipeline reads hidden_states[-2]
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "attention_bias": False,
}

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 16, 32, 32],  # 4 blocks: 8x downsampling like the real VAE
    "layers_per_block": 1,
    "latent_channels": 16,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "mid_block_add_attention": True,
    "force_upcast": True,
}

SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}

# Qwen3-style chat template, reduced to what ZImagePipeline uses.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# The modules ai-toolkit trains (every Linear in the main `layers.N` blocks); the training adapter
# covers the same set.
ADAPTER_TARGET = re.compile(
    r"^layers\.\d+\.(attention\.(to_q|to_k|to_v|to_out\.0)|feed_forward\.(w1|w2|w3)|adaLN_modulation\.0)$"
)
ADAPTER_RANK = 4
ADAPTER_SEED = 1234
ADAPTER_SCALE = 0.05


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / Qwen byte-level alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_tokenizer():
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    alphabet = [_bytes_to_unicode()[b] for b in range(256)]
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    # a few merges so that common words become multi-byte tokens, as in a real BPE
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("i", "n"), ("o", "n"), ("e", "r")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_components(seed: int = 0) -> dict:
    _offline()
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(**TRANSFORMER_CONFIG)
    torch.manual_seed(seed + 1)
    te_cfg = Qwen3Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        **TEXT_ENCODER_CONFIG,
    )
    text_encoder = Qwen3Model(te_cfg).eval()
    torch.manual_seed(seed + 2)
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    return {
        "transformer": transformer,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "vae": vae,
        "scheduler": scheduler,
    }


def write_tiny_zimage(out_dir: Path, seed: int = 0) -> Path:
    """Save the tiny pipeline with `save_pretrained` into out_dir (created) and return it."""
    _offline()
    from diffusers import ZImagePipeline

    out_dir = Path(out_dir)
    # the global RNG is reseeded while building: keep the caller's stream untouched
    with torch.random.fork_rng(devices=[]):
        pipe = ZImagePipeline(**build_components(seed))
        pipe.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def adapter_shapes(pipeline_dir: Path) -> dict[str, tuple[int, int]]:
    """Module name -> (out_features, in_features) for every adapter target of the pipeline's transformer."""
    _offline()
    from diffusers import ZImageTransformer2DModel

    with torch.device("meta"):
        config = ZImageTransformer2DModel.load_config(str(Path(pipeline_dir) / "transformer"))
        model = ZImageTransformer2DModel.from_config(config)
    return {
        name: (module.out_features, module.in_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ADAPTER_TARGET.match(name)
    }


def write_tiny_lora(pipeline_dir: Path, out_file: Path, rank: int, seed: int, scale: float) -> Path:
    """A random LoRA for the tiny transformer, in the real files' format: `diffusion_model.layers.N.<module>
    .lora_A.weight` ([r, in]) and `.lora_B.weight` ([out, r]), no `.alpha` keys (alpha == rank, scale 1)."""
    from safetensors.torch import save_file

    generator = torch.Generator("cpu").manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, (out_features, in_features) in sorted(adapter_shapes(pipeline_dir).items()):
        down = torch.randn(rank, in_features, generator=generator) * scale
        up = torch.randn(out_features, rank, generator=generator) * scale
        tensors[f"diffusion_model.{name}.lora_A.weight"] = down.contiguous()
        tensors[f"diffusion_model.{name}.lora_B.weight"] = up.contiguous()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # one metadata key only: safetensors writes several in hash order, which would make builds differ
    save_file(tensors, str(out_file), metadata={"format": "pt"})
    return out_file


def write_tiny_training_adapter(pipeline_dir: Path, out_file: Path) -> Path:
    """A small deterministic stand-in for zimage_turbo_training_adapter_v2.safetensors (write_tiny_lora)."""
    return write_tiny_lora(pipeline_dir, out_file, ADAPTER_RANK, ADAPTER_SEED, ADAPTER_SCALE)
