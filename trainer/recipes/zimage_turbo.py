"""The `zimage-turbo` recipe: a LoRA on Tongyi-MAI/Z-Image-Turbo with ostris' training adapter merged.

Defaults follow ai-toolkit's Z-Image-Turbo preset, which is what users of that tool expect.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer import preview_prompts
from trainer.lokr_layout import DEFAULT_FACTOR, FACTORS
from trainer.recipes import zimage_plan
from trainer.recipes.base import Recipe, RecipeConfig, option

DEFAULT_SAMPLE_PROMPTS = [
    "[trigger] a portrait photo, soft window light",
    "[trigger] standing in a city street at night, neon signs",
    "[trigger] a watercolor painting",
]
# `$(?!\n)`: the end of the text, also in Python, where `$` alone allows a trailing newline
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$(?!\n)"
# a file of the LoRA library without .safetensors (a file copied in by hand may have spaces), or empty
LIBRARY_NAME = r"^$|^(?![.\s])[^/\\\x00-\x1f]{1,200}$(?!\n)"
ONE_LINE = r"^[^\n\r\t]*$(?!\n)"
NOT_BLANK = r"\S"
# each preview round renders every prompt (three times with the leak check): a list without end would spend the
# training's GPU time on previews
MAX_SAMPLE_PROMPTS = 32
MAX_PROMPT_CHARS = 2000
LORA_ONLY = {"network": ["lora"]}  # rank and alpha: a LoKr's size is its factor


@dataclass
class ZImageTurboConfig(RecipeConfig):
    name: str = option(
        "my-lora",
        "Name of the LoRA; the output file is <name>.safetensors. Letters, digits, '-', '_' and '.'.",
        "basic",
        label="LoRA name", pattern=NAME_PATTERN,
        pattern_help="Use 1-80 letters, digits, '-', '_' or '.', starting with a letter or digit.",
    )
    trigger_word: str = option(
        "",
        "Word that calls up the concept. Replaces [trigger] in captions and prompts; "
        "prepended to captions that lack it. Empty: no trigger word.",
        "basic",
        label="Trigger word", pattern=ONE_LINE, pattern_help="The trigger word must be on one line.", max_length=200,
    )
    steps: int = option(3000, "Number of optimizer steps.", "basic", min=1, max=1_000_000, label="Steps")
    learning_rate: float = option(1e-4, "Learning rate (1e-4 suits a LoRA with AdamW). With optimizer prodigy it "
                                        "multiplies the step size Prodigy finds itself: leave it at 1.", "basic",
                                  exclusive_min=0.0, max=10.0)
    network: str = option(
        "lora", "What is trained. lora: a low-rank change of each layer (rank below). lokr: a LyCORIS LoKr, each "
                "layer's change the Kronecker product of a small and a larger matrix whose sizes the LoKr factor "
                "sets (rank and alpha do not apply), as ai-toolkit and LyCORIS train it. ComfyUI loads both.",
        "basic", choices=["lora", "lokr"], label="Network",
    )
    rank: int = option(32, "LoRA rank (dimension). Higher learns more detail and makes a bigger file.", "basic",
                       min=1, max=512, label="LoRA rank", shown_when=LORA_ONLY)
    lokr_factor: int = option(
        DEFAULT_FACTOR, "With network lokr: how each side of a layer is split. Smaller factors learn more and make "
                        "bigger, slower LoKrs (8: about a rank-32 LoRA's size and ~12% more arithmetic per step; "
                        "16: a quarter of that size, ~6%; 4: four times it, ~25%); -1 splits near the square root, "
                        "the smallest file.",
        "basic", choices=FACTORS, label="LoKr factor", shown_when={"network": ["lokr"]},
    )
    lora_targets: str = option(
        "all", "Which layers of each block get a LoRA. all: attention, feed-forward and the timestep modulation "
               "(what ai-toolkit trains); attention+feed_forward; attention: the attention projections only, a "
               "smaller file that changes less beyond the concept (styles often need more).",
        choices=["all", "attention+feed_forward", "attention"], label="LoRA layers",
    )
    init_lora: str = option(
        "", "Start from a LoRA of the library (its name) instead of from zero: more steps on new or more images, "
            "or a LoRA from elsewhere taken further. Its rank and layers must match the ones above. Empty: start "
            "from zero.",
        label="Start from LoRA", pattern=LIBRARY_NAME,
        pattern_help="The name of a LoRA in the library (its file name without .safetensors).",
    )
    alpha: float | None = option(
        None, "LoRA alpha; empty means alpha = rank (scale 1, what ComfyUI and ai-toolkit assume).",
        exclusive_min=0.0, label="LoRA alpha", shown_when=LORA_ONLY,
    )
    resolutions: list[int] = option(
        [512, 768, 1024],
        "Training resolutions (square side in pixels, multiples of 16). Each image is trained at every "
        "resolution, in an aspect-ratio bucket of about that area; images are never upscaled.",
        "basic", min=64, max=4096, min_items=1, multiple_of=16, unique=True,
    )
    sample_prompts: list[str] = option(
        list(DEFAULT_SAMPLE_PROMPTS),
        "Prompts for the preview images; [trigger] is replaced by the trigger word. A prompt may end with its own "
        "size, seed and steps the way kohya and ai-toolkit write them: --w 832 --h 1216 --d 7 --s 12 (also --l "
        "guidance, --n negative prompt, --m LoRA strength).",
        "basic", pattern=NOT_BLANK, pattern_help="Sample prompts must not be empty.",
        max_items=MAX_SAMPLE_PROMPTS, max_length=MAX_PROMPT_CHARS,
    )
    optimizer: str = option(
        "auto", "auto: AdamW, with its fused kernel on a CUDA GPU (the fastest step). adamw8bit: 8-bit AdamW "
                "(bitsandbytes) keeps its moments in a quarter of the memory, for a high rank on a small card. "
                "prodigy: Prodigy finds the learning rate itself (set learning_rate to 1): no rate to guess, a "
                "little more memory and time per step.",
        choices=["auto", "adamw8bit", "adamw", "prodigy"],
    )
    weight_decay: float = option(1e-4, "AdamW weight decay.", min=0.0, max=1.0)
    lr_schedule: str = option("constant", "Learning-rate schedule after warm-up.", choices=["constant", "cosine"])
    warmup_steps: int = option(0, "Steps to ramp the learning rate up from zero.", min=0)
    max_grad_norm: float = option(1.0, "Gradient clipping norm; 0 turns clipping off.", min=0.0)
    ema_decay: float = option(
        0.0, "Keep a moving average of the LoRA weights with this decay (e.g. 0.99, or 0.999 for long runs) and "
             "write and preview it instead of the last step's weights: smoother, and less sensitive to the step "
             "the run stops at. 0 turns it off.", min=0.0, max=0.9999, label="EMA decay",
    )
    batch_size: int = option(1, "Images per micro-batch (all from one aspect-ratio bucket).", min=1, max=64)
    gradient_accumulation: int = option(1, "Micro-batches summed per optimizer step.", min=1, max=256)
    mixed_precision: str = option(
        "bf16", "Compute precision on a GPU (bf16 autocast, or plain float32). The CPU always uses float32.",
        choices=["bf16", "fp32"],
    )
    gradient_checkpointing: str = option(
        "auto",
        "Recompute block activations in the backward pass to save GPU memory. on: every block recomputes "
        "everything (least memory, a third more arithmetic per block); selective: every block keeps its matmul "
        "and attention outputs and recomputes only element-wise work (about a third of the memory, but slower "
        "than on today); off: none. auto: as many blocks as fit the GPU's free memory (or vram_budget_gb) keep "
        "everything, the rest recompute; none on the CPU. true/false are read as on/off.",
        choices=["auto", "selective", "on", "off"], accepts_bool=True,
    )
    vram_budget_gb: float | None = option(
        None, "GPU memory (GB) that gradient_checkpointing=auto plans for; empty: the GPU's free memory.",
        exclusive_min=0.0, max=1024.0, label="VRAM budget (GB)",
    )
    quantize_base: str = option(
        "none", "Store the frozen base transformer in 8 bits on a CUDA GPU (float8 or int8) to save memory; "
                "ignored on the CPU.",
        choices=["none", "float8", "int8"],
    )
    float8_matmuls: bool = option(
        True, "With quantize_base=float8 on a GPU with float8 tensor cores (Hopper, Ada), multiply in float8 "
              "instead of expanding the weights to bf16 (faster); elsewhere the float8 weights are expanded. "
              "The LoRA itself always trains in bf16/float32.",
    )
    compile: bool = option(
        True, "Compile each transformer block with torch.compile on a CUDA GPU with Triton: about 1.5x faster "
              "steps (2x with float8 matmuls) after a one-time compile of about 40 s, cached in the workspace for "
              "restarts; a block that fails to compile runs uncompiled, and so does a job under 300 steps (the "
              "compile would not pay). Elsewhere the blocks run uncompiled.",
        label="torch.compile",
    )
    attention_backend: str = option(
        "auto", "Attention kernel tried first on a CUDA GPU: auto (flash), cudnn, flash, or default (PyTorch's "
                "own order). Falls back to PyTorch's order when the kernel cannot run; the CPU uses the default.",
        choices=["auto", "cudnn", "flash", "default"],
    )
    log_every: int | None = option(
        None, "Read the loss and step timings back from the GPU every N steps (each read waits for the GPU); "
              "empty: every 10 steps on a GPU, every step on the CPU.",
        min=1, max=1000,
    )
    caption_dropout: float = option(0.05, "Fraction of steps trained with an empty caption.", min=0.0, max=1.0)
    flip_horizontal: bool = option(
        False, "Also train on a mirror image of every picture: twice the examples from the same images. Good for "
               "styles and symmetric subjects; leave it off when text, a logo or a side parting must stay the right "
               "way round.", label="Mirror images",
    )
    alpha_mask: bool = option(
        False, "Images with transparency (PNG or WebP with an alpha channel) train on their visible part only: cut "
               "a subject out of its background and the LoRA learns the subject, not the background. Opaque "
               "images train whole.", label="Train on the visible part",
    )
    preserve_class: str = option(
        "", "A class word (person, woman, man, dog, car, ...) the LoRA should leave as the base model draws it. Each "
            "step also trains the LoRA to render your captions with this word in place of the trigger word as the "
            "base model does, so your subject stays on the trigger word instead of leaking into every woman (or dog) "
            "the LoRA draws; ai-toolkit calls it differential output preservation. A step takes about 2.4 times "
            "as long. Needs a trigger word. Empty: off.",
        label="Preserve the class", pattern=ONE_LINE, pattern_help="The class word must be on one line.",
        max_length=200,
    )
    preserve_weight: float = option(
        1.0, "How much preserve_class weighs against learning your images (1: as much).", min=0.0, max=10.0,
        label="Preservation weight",
    )
    timestep_sampling: str = option(
        "weighted",
        "How noise levels are drawn: weighted (uniform with ai-toolkit's bell-shaped loss weights, its Turbo "
        "preset), shift (shifted toward noise by `shift`), sigmoid, uniform.",
        choices=["weighted", "shift", "sigmoid", "uniform"],
    )
    shift: float = option(3.0, "Flow-matching shift for timestep_sampling = shift.", exclusive_min=0.0, max=100.0)
    missing_captions: str = option(
        "default_caption",
        "What to do with an image that has no .txt caption: use default_caption, or stop with an error.",
        choices=["default_caption", "error"],
    )
    default_caption: str = option("[trigger]", "Caption for images without one ([trigger] is the trigger word).",
                                  max_length=MAX_PROMPT_CHARS)
    save_every: int = option(250, "Save a checkpoint every N steps.", min=1)
    keep_last: int = option(4, "Checkpoints to keep (older ones are deleted; with holdout_images, the one nearest the "
                                  "lowest held-out loss is kept too).", min=1, max=1000)
    save_dtype: str = option(
        "bf16", "Precision of the LoRA files you download (the final one and each checkpoint's): bf16 is half "
                "the size of fp32 and what ComfyUI computes in; fp16, fp32. Resuming always uses the full-"
                "precision training state.",
        choices=["bf16", "fp16", "fp32"], label="LoRA file precision",
    )
    sample_every: int = option(250, "Render preview images every N steps; 0 turns previews off.", min=0)
    sample_width: int = option(1024, "Preview width in pixels (multiple of 16).", min=64, max=4096, multiple_of=16)
    sample_height: int = option(1024, "Preview height in pixels (multiple of 16).", min=64, max=4096,
                                multiple_of=16)
    sample_steps: int = option(9, "Sampling steps for previews.", min=1, max=100)
    guidance_scale: float = option(
        0.0, "Classifier-free guidance for previews; Turbo uses 0 (off). Note 1.0 still runs guidance.",
        min=0.0, max=30.0,
    )
    eval_every: int | None = option(
        None, "Measure the evaluation loss every N steps (and before the first and after the last): a few of your "
              "images at fixed noise levels with fixed noise, so the curve shows learning without the step loss's "
              "noise. Empty: at every checkpoint (save_every), so the lowest held-out loss falls on a checkpoint; "
              "0 turns it off.", min=0, label="Evaluate every",
    )
    holdout_images: int = option(
        0, "Images kept out of training and measured beside the evaluation loss: when their loss rises while the "
           "training images' falls, the LoRA memorises its images (overfitting) and the job says from which step. "
           "0 holds none out.", min=0, max=1000, label="Held-out images",
    )
    stop_when_overfitting: bool = option(
        False, "With holdout_images: end the job once the held-out images' loss has risen for two evaluations in a "
               "row while the training images' falls. The LoRA is then the checkpoint nearest their lowest loss; "
               "the steps after it are dropped (their loss stays in the chart).", label="Stop when overfitting",
    )
    seed: int = option(42, "Random seed for LoRA init, data order, noise and previews.", min=0, max=2**31 - 1)

    def __post_init__(self) -> None:
        if isinstance(self.gradient_checkpointing, bool):  # configs written before "auto" existed
            self.gradient_checkpointing = "on" if self.gradient_checkpointing else "off"
        super().__post_init__()

    def advice(self) -> list[dict[str, str]]:
        """Settings that are valid but probably not meant (shown as warnings, never refused)."""
        notes = []
        if self.warmup_steps >= self.steps and self.warmup_steps:
            notes.append({"field": "warmup_steps", "message": f"The warm-up ({self.warmup_steps} steps) is not "
                                                              f"shorter than the run ({self.steps} steps): the "
                                                              "learning rate never reaches its full value."})
        notes += self._rate_advice() + preview_prompts.advice(self)
        if self.network == "lokr" and self.alpha is not None:
            notes.append({"field": "alpha", "message": "LoRA alpha does not apply to a LoKr: its change is used at "
                                                       "scale 1 (the learning rate sets how fast it learns)."})
        word = self.preserve_class.strip()
        if word and not self.trigger_word.strip():
            notes.append({"field": "preserve_class", "message": f"Preserving '{word}' needs a trigger word to put it "
                                                                "in place of; without one it is off (unless another "
                                                                "dataset of the job brings its own)."})
        elif word and word.lower() == self.trigger_word.strip().lower():
            notes.append({"field": "preserve_class", "message": "The class word is the trigger word itself: the LoRA "
                                                                "would be trained to leave its own trigger word alone. "
                                                                "Use the class your subject belongs to (person, dog, "
                                                                "...)."})
        elif word and self.preserve_weight == 0:
            notes.append({"field": "preserve_weight", "message": "The preservation weight is 0, which turns "
                                                                 "preserve_class off."})
        return notes

    def _rate_advice(self) -> list[dict[str, str]]:
        """A learning rate meant for the other kind of optimizer: Prodigy's multiplier is about 1, AdamW's rate
        about 1e-4."""
        rate = f"{self.learning_rate:g}"
        if self.optimizer == "prodigy" and self.learning_rate < 0.1:
            return [{"field": "learning_rate", "message": f"With Prodigy the learning rate multiplies the step size "
                                                          f"it finds: {rate} makes the steps {rate} times as "
                                                          "large, so the LoRA will barely learn. Leave it at 1."}]
        if self.optimizer != "prodigy" and self.learning_rate >= 0.01:
            return [{"field": "learning_rate", "message": f"A learning rate of {rate} is far above what AdamW "
                                                          "trains a LoRA with (1e-4): the loss will most likely "
                                                          "turn to NaN. A rate about 1 is for optimizer prodigy."}]
        return []

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else float(self.rank)


PRESETS = {
    # 16 GB: 8-bit base, 512 px only, activations recomputed as the card needs
    "16gb": {"quantize_base": "float8", "resolutions": [512], "gradient_checkpointing": "auto",
             "vram_budget_gb": 15.0, "batch_size": 1},
    # 24 GB: 8-bit base at the full resolution set (ai-toolkit's default for a 24 GB card)
    "24gb": {"quantize_base": "float8", "resolutions": [512, 768, 1024], "gradient_checkpointing": "auto",
             "vram_budget_gb": 22.0, "batch_size": 1},
    # 48 GB: bf16 base; most or all blocks keep their activations
    "48gb": {"quantize_base": "none", "resolutions": [512, 768, 1024], "gradient_checkpointing": "auto",
             "vram_budget_gb": 46.0, "batch_size": 1},
}

RECIPE = Recipe(
    name="zimage-turbo",
    title="Z-Image-Turbo LoRA",
    description="LoRA for Tongyi-MAI/Z-Image-Turbo, trained with ostris' de-distillation adapter merged; "
                "loads in ComfyUI and diffusers.",
    config_class=ZImageTurboConfig,
    presets=PRESETS,
    estimator=zimage_plan.estimate,
    step_rule=zimage_plan.suggested_steps,
)
