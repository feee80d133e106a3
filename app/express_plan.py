"""The express lane's training plan: every setting derived from the dataset and the GPU, each with
the reason it was chosen, so the page can show it and the normal job form can open it."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.express_rules import MANY_IMAGES, MIN_IMAGES, PRESERVED_CLASS, ExpressInputError, sample_prompts
from app.imaging import SMALL_SIDE
from studio.text import name_list
from trainer.recipes import get_recipe
from trainer.recipes.zimage_plan import MAX_STEPS

RESOLUTIONS = (512, 768, 1024)
DEMO = {"resolutions": [64], "sample_width": 64, "sample_height": 64, "sample_steps": 2, "rank": 4,
        "learning_rate": 1e-3}
DEMO_MAX_STEPS = 40
PREVIEWS = 4  # sample steps during a run (plus the final one)


@dataclass
class Gpu:
    name: str
    total_gb: float
    free_gb: float


@dataclass
class Plan:
    name: str
    images: int
    config: dict
    preset: str | None
    choices: list[dict] = field(default_factory=list)  # {"setting", "value", "why"}
    warnings: list[str] = field(default_factory=list)
    estimated_s: float | None = None
    estimate_device: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _resolutions(short_sides: list[int]) -> tuple[list[int], str]:
    """Every training resolution that at least half the images reach (images are never upscaled)."""
    chosen = [r for r in RESOLUTIONS if sum(side >= r for side in short_sides) * 2 >= len(short_sides)]
    median = sorted(short_sides)[len(short_sides) // 2]
    if not chosen:
        return [512], f"most images are small (median short side {median} px): they train at their own size"
    return chosen, f"at least half the images are {chosen[-1]} px or more on their short side (median {median} px)"


def _budgets(recipe) -> list[tuple[float, str]]:
    """(GB a memory preset plans for, its name), largest first."""
    return sorted(((values.get("vram_budget_gb") or 0.0, name) for name, values in recipe.presets.items()),
                  reverse=True)


def _require_gpu(gpu: Gpu | None) -> Gpu:
    if gpu is None:
        raise ExpressInputError("gpu", "No NVIDIA GPU was found: training Z-Image needs one with at least 16 GB. "
                                       "Run the studio on a GPU pod (or in demo mode to try it).")
    return gpu


def check_gpu(gpu: Gpu | None) -> None:
    """Before anything is uploaded: is there a GPU that any memory preset fits on (its whole memory)?"""
    gpu = _require_gpu(gpu)
    smallest = _budgets(get_recipe("zimage-turbo"))[-1][0]
    if gpu.total_gb < smallest:
        raise ExpressInputError("gpu", f"{gpu.name} has {gpu.total_gb:.0f} GB, and even the smallest memory preset "
                                       f"needs {smallest:.0f} GB: use a GPU with 16 GB or more.")


def _preset(recipe, gpu: Gpu | None) -> tuple[str, str]:
    """The largest memory preset that fits the GPU's free memory."""
    gpu = _require_gpu(gpu)
    fits = _budgets(recipe)
    for budget, name in fits:
        if gpu.free_gb >= budget:
            return name, f"{gpu.name} has {gpu.free_gb:.0f} GB free; the {name} preset plans for {budget:.0f} GB"
    smallest = fits[-1][0]
    raise ExpressInputError("gpu", f"{gpu.name} has only {gpu.free_gb:.1f} GB free, and even the smallest memory "
                                   f"preset needs {smallest:.0f} GB: stop other programs on the GPU, or use a "
                                   "larger GPU.")


def make_plan(*, name: str, trigger: str, kind: str, sizes: list[tuple[int, int]], captions: list[str],
              gpu: Gpu | None, demo: bool, transparent: int = 0, soft: tuple[str, ...] = (),
              small: tuple[tuple[str, int, int], ...] = (), similar: tuple[tuple[str, str], ...] = (),
              preserve: bool = False) -> Plan:
    """The job config for `sizes` (width, height of each image to train on) and `captions`; `transparent` of
    the images have an alpha channel; `soft` names those the gallery flags as soft and `small` (name, width,
    height) those it flags as small; `similar` (name, the earlier image it looks like) its near-duplicates;
    `preserve`: keep the class (a person, an object) as the base model draws it."""
    recipe = get_recipe("zimage-turbo")
    images = len(sizes)
    if images == 0:
        raise ExpressInputError("images", "No usable images were found in the upload: add photos (.jpg, .png, "
                                          ".heic, ...), a ZIP of them or a video, and try again.")
    plan = Plan(name=name, images=images, config={}, preset=None)

    def choose(setting: str, value, why: str) -> None:
        plan.config[setting] = value
        plan.choices.append({"setting": setting, "value": value, "why": why})

    choose("name", name, "from the dataset's name, unique among your LoRAs")
    choose("trigger_word", trigger, "what you typed")
    steps = recipe.suggested_steps(images)
    if demo:
        choose("steps", min(DEMO_MAX_STEPS, max(10, images * 4)), "demo mode: a tiny model trains in seconds")
        for setting, value in DEMO.items():
            choose(setting, value, "demo mode: the tiny model's size")
    else:
        choose("steps", steps, f"{images} images x 100 steps, kept between 500 and {MAX_STEPS} (the recipe's rule)")
        plan.preset, why = _preset(recipe, gpu)
        for setting, value in recipe.presets[plan.preset].items():
            choose(setting, value, why)
        if plan.preset != "16gb":  # the 16 GB preset trains at 512 px only, whatever the images
            resolutions, why = _resolutions([min(w, h) for w, h in sizes])
            choose("resolutions", resolutions, why)
    every = max(1, plan.config["steps"] // PREVIEWS)
    choose("sample_every", every, f"{PREVIEWS} previews during the run, and one at the end")
    choose("save_every", every, "a checkpoint at every preview, so a stop loses little")
    if kind == "style":
        choose("flip_horizontal", True, "a style has no left and right: each picture also trains mirrored, twice "
                                        "the examples from the same images")
    if transparent and transparent * 2 >= images:
        choose("alpha_mask", True, f"{transparent} of {images} images have transparency (a cut-out subject): they "
                                   "train on their visible part, so the LoRA does not learn the background")
    if preserve and kind in PRESERVED_CLASS:
        word = PRESERVED_CLASS[kind]
        choose("preserve_class", word, f"you asked to keep other {'people' if kind == 'person' else 'objects'} as the "
                                       f"base model draws them: each step also trains the LoRA to leave '{word}' (what "
                                       "the captions call the subject) alone, so only the trigger word calls up yours; "
                                       "about 2.4x the training time")
    choose("sample_prompts", sample_prompts(kind, captions),
           "two of your captions (does it reproduce them?) and a new scene (does it carry the subject?)")
    if images < MIN_IMAGES:
        plan.warnings.append(f"Only {images} image{'s' if images != 1 else ''}: 10-30 varied images usually give a "
                             "better LoRA. It trains anyway.")
    if images > MANY_IMAGES:
        plan.warnings.append(f"{images} images: training stops at the {MAX_STEPS}-step cap, so each image is seen "
                             "only a few times; the time estimate below is for that cap.")
    if soft:
        plan.warnings.append(f"{len(soft)} of {images} images look soft (out of focus, blurred or upscaled): "
                             f"{name_list(list(soft))}. A LoRA learns the softness too; the dataset's Flagged filter "
                             "shows them, to crop, replace or remove before a next run.")
    if small:
        plan.warnings.append(_small_warning(small, images))
    if similar:
        pairs = name_list([f"{name} like {like}" for name, like in similar])
        plan.warnings.append(f"{len(similar)} of {images} images look nearly the same as another ({pairs}): that "
                             "look is trained twice as often as the others. The dataset's Flagged filter shows "
                             "them, to keep the best of each before a next run.")
    config = recipe.config_from_dict(plan.config)
    guess = recipe.estimate(config, images, gpu.name if gpu else None, demo, sizes)
    plan.estimated_s, plan.estimate_device = guess.seconds, guess.device
    return plan


def _small_warning(small: tuple[tuple[str, int, int], ...], images: int) -> str:
    """The images the gallery flags as small, the smallest named: they are never upscaled, so they bring less
    detail than the rest."""
    name, width, height = min(small, key=lambda entry: (min(entry[1], entry[2]), entry[0]))
    one = len(small) == 1
    which = f"{name}, {width}x{height}" if one else f"smallest: {name}, {width}x{height}"
    return (f"{len(small)} of {images} images {'is' if one else 'are'} under {SMALL_SIDE} px on the short side "
            f"({which}): never upscaled, {'it brings' if one else 'they bring'} less detail than the rest, and a "
            "LoRA learns that too. The dataset's Flagged filter shows them, to replace or remove before a next run.")
