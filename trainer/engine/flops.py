"""How much arithmetic one training step of the Z-Image transformer needs, counted from its shapes.

The count is what the GPU must do at the least, so that a measured step time can be turned into a
model-FLOPs utilisation (MFU) and a floor (FLOPs / the GPU's measured bf16 matmul rate):

- matrix products of every Linear (2 FLOP per multiply-add) and of attention (QK^T and PV);
- forward pass, plus the backward pass for activations only: the base weights are frozen, so no
  weight gradient is computed for them, only for the LoRA;
- the noise/context refiners and the embedders hold no trainable weight and take no gradient from
  their inputs, so autograd runs no backward through them;
- attention backward = 2x its forward (dQ, dK from dS; dV, dS from dO);
- recomputation of checkpointed blocks is counted separately ("hardware" FLOPs): MFU uses the model
  FLOPs without it, as is the convention; HFU includes it.

Elementwise work (norms, RoPE, SiLU, adaLN gating) is left out: it is memory-bound and small next to
the matrix products. The q/k/v input gradients of the first main block are counted although autograd
can skip them (the block input needs no gradient); that is 0.3% of a 1024 px step.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_MULTIPLE = 32  # the transformer pads the image and caption sequences to multiples of 32


@dataclass(frozen=True)
class TransformerShape:
    dim: int = 3840
    hidden: int = 10240  # SwiGLU width: int(dim / 3 * 8)
    n_layers: int = 30
    n_refiner_layers: int = 2
    adaln_dim: int = 256  # min(dim, 256)
    t_mid: int = 1024  # t_embedder MLP 256 -> 1024 -> 256
    cap_feat_dim: int = 2560
    patch_features: int = 64  # 2 x 2 patch x 16 latent channels
    vae_factor: int = 8
    patch: int = 2

    @classmethod
    def from_config(cls, config) -> TransformerShape:
        """From a ZImageTransformer2DModel config (a dict or the model's FrozenDict)."""
        dim = int(config["dim"])
        patch = int(config["all_patch_size"][0])
        return cls(dim=dim, hidden=int(dim / 3 * 8), n_layers=int(config["n_layers"]),
                   n_refiner_layers=int(config["n_refiner_layers"]), adaln_dim=min(dim, 256),
                   cap_feat_dim=int(config["cap_feat_dim"]),
                   patch_features=patch * patch * int(config["in_channels"]), patch=patch)

    @property
    def block_linear_macs(self) -> int:
        """Multiply-adds per token of one block's q, k, v, out and w1, w2, w3."""
        return 4 * self.dim * self.dim + 3 * self.dim * self.hidden

    def lora_macs(self, rank: int) -> int:
        """Per token, one main block's LoRA (down: rank x in, up: out x rank) on its 7 token linears."""
        return rank * (4 * (self.dim + self.dim) + 3 * (self.dim + self.hidden))

    def adaln_macs(self, rank: int) -> int:
        """Per sample, one main block's adaLN linear (256 -> 4 dim) with its LoRA."""
        return self.adaln_dim * 4 * self.dim + rank * (self.adaln_dim + 4 * self.dim)


def _pad(n: int) -> int:
    return n + (-n) % SEQ_MULTIPLE


def image_tokens(width: int, height: int, shape: TransformerShape = TransformerShape()) -> int:
    side = shape.vae_factor * shape.patch
    return _pad((height // side) * (width // side))


@dataclass(frozen=True)
class StepFlops:
    forward: float
    backward: float
    recompute: float
    image_tokens: int
    caption_tokens: int

    @property
    def model(self) -> float:
        """FLOPs the step needs (no recomputation): the basis of MFU and of the floor."""
        return self.forward + self.backward

    @property
    def hardware(self) -> float:
        """FLOPs the step runs, recomputation of checkpointed blocks included (HFU)."""
        return self.model + self.recompute

    def floor_s(self, flops_per_s: float) -> float:
        return self.model / flops_per_s

    def mfu(self, seconds: float, flops_per_s: float) -> float:
        return self.model / (seconds * flops_per_s)

    def hfu(self, seconds: float, flops_per_s: float) -> float:
        return self.hardware / (seconds * flops_per_s)


def step_flops(width: int, height: int, caption_tokens: int, rank: int, batch: int = 1,
               checkpointed_blocks: int = 0, shape: TransformerShape = TransformerShape()) -> StepFlops:
    """FLOPs of one optimizer step on `batch` samples of width x height pixels with captions of
    `caption_tokens` tokens; `checkpointed_blocks` main blocks recompute their forward in backward."""
    s = shape
    t_img, t_cap = image_tokens(width, height, s), _pad(caption_tokens)
    t = t_img + t_cap
    attn = 2 * t * t * s.dim  # multiply-adds of QK^T plus PV, one block

    # ---- main blocks: the only part with trainable weights
    main_linear = s.n_layers * t * s.block_linear_macs
    main_attn = s.n_layers * attn
    main_lora = s.n_layers * t * s.lora_macs(rank)
    main_adaln = s.n_layers * s.adaln_macs(rank)
    # ---- refiners, embedders and the final layer (forward only, except the final layer's input grad)
    refiners = s.n_refiner_layers * (t_img * s.block_linear_macs + t_cap * s.block_linear_macs
                                     + 2 * t_img * t_img * s.dim + 2 * t_cap * t_cap * s.dim
                                     + s.adaln_dim * 4 * s.dim)  # only the noise refiner has adaLN
    embed = t_img * s.patch_features * s.dim + t_cap * s.cap_feat_dim * s.dim
    embed += 2 * s.adaln_dim * s.t_mid  # timestep MLP
    final = t * s.dim * s.patch_features + s.adaln_dim * s.dim

    forward = main_linear + main_attn + main_lora + main_adaln + refiners + embed + final
    backward = (main_linear  # frozen weights: input gradients only
                + 2 * main_attn
                + 2 * main_lora  # LoRA: weight gradients of down and up, plus their input gradients
                + 2 * s.n_layers * rank * (s.adaln_dim + 4 * s.dim)  # adaLN LoRA weight grads (input needs none)
                + t * s.dim * s.patch_features)  # final layer input gradient
    per_block_forward = t * (s.block_linear_macs + s.lora_macs(rank)) + attn + s.adaln_macs(rank)
    recompute = min(max(checkpointed_blocks, 0), s.n_layers) * per_block_forward
    # 2 FLOP per multiply-add; the batch repeats everything
    return StepFlops(2.0 * batch * forward, 2.0 * batch * backward, 2.0 * batch * recompute, t_img, t_cap)
