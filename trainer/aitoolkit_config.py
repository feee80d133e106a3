"""An ai-toolkit training config as this studio's job settings. People who trained Z-Image-Turbo LoRAs with ostris'
ai-toolkit have a config that works for them: pasted into the new job form's text view (its YAML, or the JSON its
web UI saves) or opened there as a file, its settings are taken, and the form says which, and which of its settings
this studio does its own way or leaves out, each with the reason. Nothing is guessed: a setting the config does not
state keeps the form's value, except where ai-toolkit's own default is part of what the config means (its alpha of 1
beside a rank without linear_alpha, 1000 warm-up steps with constant_with_warmup, EMA decay 0.999, one seed for
every preview without walk_seed).

The config is a job (`job: extension`, `config.process[0]`), a bare process, or the process's own keys (network,
train, save, datasets, sample, model). Values are checked here only as far as mapping them needs; the recipe checks
the result like any other config, so an out-of-range value is named next to its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.aitoolkit_values import number, sixteen, too_large, whole
from trainer.lokr_layout import FACTORS
from trainer.names import slug

SECTIONS = ("network", "train", "save", "datasets", "sample", "model")
OPTIMIZERS = {"adamw8bit": "adamw8bit", "adamw": "adamw", "adam": "adamw", "adam8bit": "adamw8bit",
              "prodigy": "prodigy", "prodigy_schedulefree": "prodigy", "prodigyopt": "prodigy"}
TIMESTEPS = {"weighted": "weighted", "sigmoid": "sigmoid", "shift": "shift", "linear": "uniform",
             "uniform": "uniform"}
DTYPES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "fp32": "fp32",
          "float32": "fp32", "float": "fp32"}
QUANTIZED = {"qfloat8": "float8", "float8": "float8", "float8_e4m3fn": "float8", "qint8": "int8", "int8": "int8"}
ADAPTER = "the studio merges ostris' training adapter for Z-Image-Turbo itself"
# settings the studio does its own way or does not have, noted when a config turns them on: the key, and why
NOTED = {
    "assistant_lora_path": ADAPTER, "cache_latents_to_disk": "latents are always cached",
    "cache_latents": "latents are always cached", "cache_text_embeddings": "captions are always encoded once",
    "low_vram": "gradient_checkpointing auto fits the job to the GPU's memory",
    "quantize_te": "the text encoder only encodes each caption once, then leaves the GPU",
    "folder_path": "pick the dataset in the form: the studio trains on its own datasets",
    "noise_offset": "no noise offset", "content_or_style": "timestep_sampling sets where the steps go",
    "flip_y": "only mirror images (flip_x) are trained", "shuffle_tokens": "captions are trained as written",
    "token_dropout_rate": "captions are trained as written",
    "is_reg": "Preserve the class does what regularisation images do, without them",
    "random_crop": "images are trained whole, in an aspect-ratio bucket",
    "train_text_encoder": "the text encoder stays frozen",
    "linear_timesteps": "timestep_sampling sets the weighting", "network_kwargs": "lora_targets chooses the layers",
    "dropout": "no LoRA dropout", "conv": "Z-Image's transformer has no convolutions",
    "layer_offloading": "gradient_checkpointing auto and quantize_base fit the job to the GPU's memory",
    "num_repeats": "set a dataset's repeats in the form", "blank_prompt_preservation": "not in the studio",
    "min_snr_gamma": "timestep_sampling weighted weighs the loss by the noise level",
}


@dataclass
class Translated:
    config: dict  # this studio's settings, only those the ai-toolkit config stated
    taken: list[str] = field(default_factory=list)  # "steps 3000", ...
    own_way: list[str] = field(default_factory=list)  # "cache_latents_to_disk: latents are always cached", ...
    warnings: list[str] = field(default_factory=list)  # a config for another model, a value brought into range


def process_of(doc) -> dict | None:
    """The training process of an ai-toolkit config (a whole job, a process, or its sections); None for a config
    that is not one (this studio's own settings, for one)."""
    if not isinstance(doc, dict):
        return None
    inner = doc.get("config") if isinstance(doc.get("config"), dict) else doc
    processes = inner.get("process")
    if isinstance(processes, list) and processes and isinstance(processes[0], dict):
        found = processes[0]
        if isinstance(inner.get("name"), str) and "name" not in found:
            found = {**found, "name": inner["name"]}
        return found
    if sum(isinstance(doc.get(key), (dict, list)) for key in SECTIONS) >= 2:
        return doc
    return None


def translate(doc) -> Translated | None:
    """This studio's settings from an ai-toolkit config (process_of), with what was taken and what was not; None
    when `doc` is not an ai-toolkit config."""
    process = process_of(doc)
    if process is None:
        return None
    out = Translated({})
    huge: list[str] = []
    too_large(process, "", huge, [5000])
    if huge:
        out.warnings.append(f"{', '.join(huge)}: too large to be any setting's value; the form's value stays.")
    if isinstance(process.get("name"), str) and process["name"].strip():
        _take(out, "name", slug(process["name"]), "name")
    if isinstance(process.get("trigger_word"), str) and process["trigger_word"].strip():
        _take(out, "trigger_word", process["trigger_word"].strip(), "trigger_word")
    _network(_section(process, "network"), out)
    _train(_section(process, "train"), out)
    _save(_section(process, "save"), out)
    _datasets(process.get("datasets"), out)
    _sample(_section(process, "sample"), out, process.get("training_seed"))
    _model(_section(process, "model"), out)
    _notes(process, out)
    return out


def _section(process: dict, name: str) -> dict:
    value = process.get(name)
    return value if isinstance(value, dict) else {}


def _take(out: Translated, key: str, value, shown: str) -> None:
    out.config[key] = value
    if key == "sample_prompts":
        out.taken.append(f"{shown} ({len(value)})")
    elif isinstance(value, list):
        out.taken.append(f"{shown} {', '.join(map(str, value))}")
    else:
        out.taken.append(f"{shown} = rank" if key == "alpha" and value is None else f"{shown} {value}")


def _model(model: dict, out: Translated) -> None:
    arch = str(model.get("arch") or "")
    path = str(model.get("name_or_path") or "")
    if arch and not arch.startswith("zimage") or not arch and path and "z-image" not in path.lower():
        what = arch or path
        out.warnings.append(f"This config trains {what}, not Z-Image-Turbo: its settings were taken as they are; "
                            "check the learning rate and the rank.")
    elif "deturbo" in (arch + path).lower().replace("-", ""):
        out.warnings.append("This config trains ostris' Z-Image De-Turbo; the studio trains Z-Image-Turbo with "
                            "ostris' training adapter (the same aim: a LoRA for Turbo), so check the learning rate.")
    elif "turbo" not in (arch + path).lower() and (arch or path):
        out.warnings.append("This config trains Z-Image (the base model); the studio trains Z-Image-Turbo with "
                            "ostris' training adapter, so check the learning rate and steps.")
    if model.get("quantize") is True:
        qtype = str(model.get("qtype") or "qfloat8").lower()
        if qtype in QUANTIZED:
            _take(out, "quantize_base", QUANTIZED[qtype], "quantize_base")
        else:
            _take(out, "quantize_base", "float8", "quantize_base")
            out.warnings.append(f"qtype {qtype}: the studio stores the base in float8 or int8; float8 was taken.")
    elif model.get("quantize") is False:
        _take(out, "quantize_base", "none", "quantize_base")
    if isinstance(model.get("compile"), bool):
        _take(out, "compile", model["compile"], "compile")


def _network(network: dict, out: Translated) -> None:
    kind = str(network.get("type") or "").lower()
    if kind in ("lora", "locon"):
        _take(out, "network", "lora", "network")
    elif kind == "lokr":
        _take(out, "network", "lokr", "network")
        factor = number(network.get("lokr_factor"))
        if factor is not None:
            nearest = min(FACTORS, key=lambda f: (abs(f - factor), f)) if factor > 0 else -1
            _take(out, "lokr_factor", nearest, "lokr_factor")
            if nearest != factor:
                out.warnings.append(f"lokr_factor {factor:g}: the studio offers {', '.join(map(str, FACTORS))}; "
                                    f"{nearest} was taken.")
        if network.get("lokr_full_rank") is not True:  # ai-toolkit's own default: w2 at the rank `linear`
            out.own_way.append("lokr_full_rank: the studio trains a LoKr's larger factor whole (full rank)")
    elif kind:
        out.warnings.append(f"network type {kind}: the studio trains a LoRA or a LoKr; the form's network stays.")
    rank = number(network.get("rank", network.get("linear")))  # ai-toolkit reads rank first
    if rank is not None and kind != "lokr":
        _take(out, "rank", whole(rank), "rank")
        stated = network.get("linear_alpha", network.get("alpha", 1.0))  # its default alpha is 1
        alpha = number(stated)
        if alpha is None:
            out.warnings.append(f"linear_alpha {str(stated)[:40]} is not a number: the form's alpha stays.")
        else:  # alpha = rank: the studio's empty alpha
            _take(out, "alpha", None if alpha == rank else alpha, "alpha")


def _train(train: dict, out: Translated) -> None:
    for key, ours in (("steps", "steps"), ("batch_size", "batch_size"), ("max_grad_norm", "max_grad_norm")):
        value = number(train.get(key))
        if value is not None:
            _take(out, ours, whole(value) if ours != "max_grad_norm" else value, ours)
    accumulation = number(train.get("gradient_accumulation", train.get("gradient_accumulation_steps")))
    if accumulation is not None:
        _take(out, "gradient_accumulation", whole(accumulation), "gradient_accumulation")
    optimizer = str(train.get("optimizer") or "").lower()
    rate = number(train.get("lr"))
    if rate is not None and optimizer.startswith("prodigy") and rate < 0.1:  # as ai-toolkit does with Prodigy
        out.own_way.append(f"lr {rate:g} with Prodigy: 1.0 (Prodigy's learning rate is a multiplier; ai-toolkit "
                           "raises it to 1.0 too)")
        rate = 1.0
    if rate is not None:
        _take(out, "learning_rate", rate, "learning_rate")
    if optimizer in OPTIMIZERS:
        _take(out, "optimizer", OPTIMIZERS[optimizer], "optimizer")
        if optimizer == "prodigy_schedulefree":
            out.own_way.append("optimizer prodigy_schedulefree: the studio's Prodigy keeps a schedule")
    elif optimizer:
        out.warnings.append(f"optimizer {optimizer}: the studio has AdamW (8-bit or not) and Prodigy; the form's "
                            "optimizer stays.")
    params = train.get("optimizer_params") if isinstance(train.get("optimizer_params"), dict) else {}
    decay = number(params.get("weight_decay"))
    if decay is not None:
        _take(out, "weight_decay", decay, "weight_decay")
    if set(params) - {"weight_decay"}:
        out.own_way.append(f"optimizer_params {', '.join(sorted(set(params) - {'weight_decay'}))}: only weight_decay "
                           "is taken")
    if str(train.get("loss_type") or "mse").lower() != "mse":
        out.own_way.append(f"loss_type {train['loss_type']}: the loss is the mean squared error")
    _schedule(train, out)
    timesteps = str(train.get("timestep_type") or "").lower()
    if timesteps in TIMESTEPS:
        _take(out, "timestep_sampling", TIMESTEPS[timesteps], "timestep_sampling")
    elif timesteps:
        out.warnings.append(f"timestep_type {timesteps}: the studio samples weighted, shift, sigmoid or uniform; "
                            "the form's stays.")
    if train.get("diff_output_preservation") is True:
        word = str(train.get("diff_output_preservation_class") or "").strip()
        if word:
            _take(out, "preserve_class", word, "preserve_class")
        weight = number(train.get("diff_output_preservation_multiplier"))
        if weight is not None:
            _take(out, "preserve_weight", weight, "preserve_weight")
    elif train.get("diff_output_preservation") is False:
        _take(out, "preserve_class", "", "preserve_class")
    ema = train.get("ema_config") if isinstance(train.get("ema_config"), dict) else {}
    if "use_ema" in ema:
        decay = number(ema.get("ema_decay"))
        _take(out, "ema_decay", (decay if decay is not None else 0.999) if ema["use_ema"] else 0.0, "ema_decay")
    precision = DTYPES.get(str(train.get("dtype") or "").lower())
    if precision in ("bf16", "fp32"):
        _take(out, "mixed_precision", precision, "mixed_precision")
    if train.get("gradient_checkpointing") is True:
        _take(out, "gradient_checkpointing", "auto", "gradient_checkpointing")
        out.own_way.append("gradient_checkpointing true: auto, which recomputes only what the GPU's memory needs")
    elif train.get("gradient_checkpointing") is False:
        _take(out, "gradient_checkpointing", "off", "gradient_checkpointing")
    if train.get("disable_sampling") is True:
        _take(out, "sample_every", 0, "sample_every")


def _schedule(train: dict, out: Translated) -> None:
    schedule = str(train.get("lr_scheduler") or "").lower()
    params = train.get("lr_scheduler_params") if isinstance(train.get("lr_scheduler_params"), dict) else {}
    if schedule in ("constant", "cosine"):
        _take(out, "lr_schedule", schedule, "lr_schedule")
    elif schedule == "constant_with_warmup":  # its warm-up: lr_scheduler_params.num_warmup_steps, 1000 unless set
        _take(out, "lr_schedule", "constant", "lr_schedule")
        warmup = number(params.get("num_warmup_steps", 1000))
        if warmup is not None:
            _take(out, "warmup_steps", whole(warmup), "warmup_steps")
    elif schedule:
        out.warnings.append(f"lr_scheduler {schedule}: the studio's schedules are constant and cosine (with "
                            "warm-up steps); the form's stays.")


def _save(save: dict, out: Translated) -> None:
    precision = DTYPES.get(str(save.get("dtype") or "").lower())
    if precision:
        _take(out, "save_dtype", precision, "save_dtype")
    every = number(save.get("save_every"))
    if every is not None:
        _take(out, "save_every", whole(every), "save_every")
    keep = number(save.get("max_step_saves_to_keep"))
    if keep is not None:
        _take(out, "keep_last", whole(keep), "keep_last")


def _datasets(datasets, out: Translated) -> None:
    if isinstance(datasets, dict):
        datasets = [datasets]
    if not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], dict):
        return
    first = datasets[0]
    if len(datasets) > 1:
        out.own_way.append(f"{len(datasets)} datasets: pick them in the form (+ Add), each with its repeats; the "
                           "first one's settings were taken")
    dropout = number(first.get("caption_dropout_rate"))
    if dropout is not None:
        _take(out, "caption_dropout", dropout, "caption_dropout")
    sizes = first.get("resolution")
    sizes = [sizes] if not isinstance(sizes, list) else sizes
    sides = [int(n) for n in (number(s) for s in sizes) if n is not None and n > 0]
    if sides:
        even = sorted({sixteen(side) for side in sides})
        _take(out, "resolutions", even, "resolutions")
        if set(even) != set(sides):
            out.warnings.append(f"resolution {sides}: sides are multiples of 16 here; {even} was taken.")
    if isinstance(first.get("flip_x"), bool):
        _take(out, "flip_horizontal", first["flip_x"], "flip_horizontal")
    if isinstance(first.get("default_caption"), str) and first["default_caption"].strip():
        _take(out, "default_caption", first["default_caption"].strip(), "default_caption")
    if isinstance(first.get("alpha_mask"), bool):
        _take(out, "alpha_mask", first["alpha_mask"], "alpha_mask")
    word = first.get("trigger_word")
    if "trigger_word" not in out.config and isinstance(word, str) and word.strip():  # a dataset's own trigger word
        _take(out, "trigger_word", word.strip(), "trigger_word")


def _sample(sample: dict, out: Translated, training_seed) -> None:
    for key, ours in (("sample_every", "sample_every"), ("sample_steps", "sample_steps"),
                      ("guidance_scale", "guidance_scale"), ("width", "sample_width"), ("height", "sample_height")):
        value = number(sample.get(key))
        if value is None:
            continue
        if ours in ("sample_width", "sample_height"):
            side, value = value, sixteen(value)
            if value != side:
                out.warnings.append(f"sample {key} {side:g}: preview sides are multiples of 16, at least 64, here; "
                                    f"{value} was taken.")
        if ours == "guidance_scale" and 0 < value <= 1:
            out.own_way.append(GUIDANCE_OFF.format(value=f"{value:g}"))
            value = 0
        _take(out, ours, value if ours == "guidance_scale" else whole(value), ours)
    seed = number(training_seed if training_seed is not None else sample.get("seed"))
    if seed is not None:
        _take(out, "seed", whole(seed), "seed")
    # ai-toolkit renders every preview with the one seed unless walk_seed (seed + the prompt's place, the studio's way)
    same = number(sample.get("seed")) if sample.get("walk_seed") is not True else None
    negative = sample.get("neg") if isinstance(sample.get("neg"), str) else ""
    items = sample.get("samples") or sample.get("prompts")
    prompts = [_prompt(item, negative.strip(), same) for item in (items if isinstance(items, list) else [])]
    prompts = [text for text in prompts if text]
    if prompts:
        _take(out, "sample_prompts", prompts, "sample_prompts")


# ai-toolkit hands its guidance_scale to diffusers' Z-Image pipeline, which guides at any value above 0 (ComfyUI's cfg
# is that value plus 1): its configs' 1, meant as "off", renders every preview twice over and unlike ComfyUI's cfg 1
GUIDANCE_OFF = ("guidance_scale {value}: taken as 0, no guidance, as Z-Image-Turbo is made to render and as the LoRA's "
                "ComfyUI workflow renders (cfg 1). The pipeline guides at any value above 0, which doubles each "
                "preview's time.")
OPTIONS = (("w", "width"), ("h", "height"), ("d", "seed"), ("l", "guidance_scale"), ("s", "sample_steps"),
           ("m", "network_multiplier"))


def _prompt(item, negative: str, seed: float | None) -> str:
    """A preview prompt in the studio's form: ai-toolkit's per-sample size, seed, guidance, steps and LoRA strength as
    the --w --h --d --l --s --m options the studio reads (as ai-toolkit writes them in the text), the negative prompt
    as --n, and the one seed every prompt shares when the config does not walk it."""
    if isinstance(item, str):
        text, extra = item, {}
    elif isinstance(item, dict) and isinstance(item.get("prompt"), str):
        text, extra = item["prompt"], item
    else:
        return ""
    text = text.strip()
    if not text:
        return ""
    extra = {**({"seed": seed} if seed is not None and extra.get("seed") is None else {}), **extra}
    options = []
    for flag, key in OPTIONS:
        value = number(extra.get(key))
        if flag == "l" and value is not None and 0 < value <= 1:
            value = None  # no guidance: see GUIDANCE_OFF
        if value is not None and f"--{flag} " not in text:
            options.append(f"--{flag} {value:g}" if flag in ("l", "m") else f"--{flag} {int(value)}")
    own = extra.get("neg") if isinstance(extra.get("neg"), str) else negative
    if own.strip() and "--n " not in text:
        options.append(f"--n {own.strip()}")
    return " ".join([text, *options])


def _notes(process: dict, out: Translated) -> None:
    """What the config turns on that the studio does its own way or does not have, each once with the reason."""
    said = {note.split(":")[0].split(" ")[0] for note in out.own_way}
    for key, value in _stated_keys(process).items():
        if key in NOTED and key not in said and value not in (False, None, 0, "", [], {}):
            out.own_way.append(f"{key}: {NOTED[key]}")


def _stated_keys(process: dict) -> dict:
    """Every key the process and its sections state, with its value (the first dataset's for the datasets)."""
    stated = dict(process)
    for name in (*SECTIONS, "logging"):
        section = process.get(name)
        if isinstance(section, list) and section and isinstance(section[0], dict):
            section = section[0]
        if isinstance(section, dict):
            stated.update(section)
            if isinstance(section.get("ema_config"), dict):
                stated.update(section["ema_config"])
    return stated

