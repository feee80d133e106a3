"""Downloadable proof beside the finished LoRA: the final base-vs-LoRA grid and a README.txt.

    lora/<name>.safetensors
    lora/proof_grid.png   rows = sample prompts; columns = base, LoRA, LoRA without the trigger word
    lora/README.txt       trigger word, steps, rank, base model, suggested strength, how to load it
    lora/comfyui_workflow.json   the LoRA in ComfyUI's Z-Image-Turbo workflow (comfy_workflow.py)
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from studio.atomic import atomic_write_bytes
from trainer.engine import model as zmodel
from trainer.engine.comfy_workflow import MODEL_FILES, WORKFLOW_NAME, workflow

GRID_NAME = "proof_grid.png"
README_NAME = "README.txt"
CELL = 320  # grid cells are scaled to this width: three columns stay readable and the file small
HEADER = 34
CAPTION_LINES = 3
LINE = 16
PAD = 8
COLUMNS = ("Base (LoRA off)", "LoRA", "LoRA, no trigger word")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an older Pillow without scalable default font
        return ImageFont.load_default()


def _open(path: Path | None) -> Image.Image | None:
    if path is None or not path.is_file():
        return None
    with Image.open(path) as im:
        return im.convert("RGB")


def _cell(image: Image.Image | None, height: int, note: str) -> Image.Image:
    if image is not None:
        return image.resize((CELL, height), Image.Resampling.LANCZOS)
    blank = Image.new("RGB", (CELL, height), (236, 236, 236))
    draw = ImageDraw.Draw(blank)
    lines = textwrap.wrap(note, 30)
    y = height // 2 - len(lines) * LINE // 2
    for line in lines:
        draw.text((CELL // 2, y), line, fill=(110, 110, 110), font=_font(13), anchor="mt")
        y += LINE
    return blank


def grid(rows: list[dict], sample_size: tuple[int, int]) -> Image.Image:
    """rows: {prompt, no_trigger_prompt, base, lora, lora_no_trigger} with image paths (None = missing). Each row
    takes its pictures' shape (a prompt may have its own size), `sample_size` when it has none."""
    pictures = [[_open(row.get(key)) for key in ("base", "lora", "lora_no_trigger")] for row in rows]
    heights = [_cell_height(next((p for p in row if p is not None), None), sample_size) for row in pictures]
    caption_h = PAD + CAPTION_LINES * LINE + PAD
    out = Image.new("RGB", (3 * CELL + 4 * PAD, HEADER + sum(heights) + len(rows) * caption_h), "white")
    draw = ImageDraw.Draw(out)
    for col, title in enumerate(COLUMNS):
        draw.text((PAD + col * (CELL + PAD) + CELL // 2, HEADER // 2), title, fill="black", font=_font(16),
                  anchor="mm")
    top = HEADER
    for r, (row, images, cell_h) in enumerate(zip(rows, pictures, heights, strict=True)):
        no_trigger_note = ("no trigger word in this prompt" if row.get("no_trigger_prompt") is None
                           else "not rendered")
        cells = [_cell(image, cell_h, note) for image, note in zip(
            images, ("base not rendered", "not rendered", no_trigger_note), strict=True)]
        for col, image in enumerate(cells):
            out.paste(image, (PAD + col * (CELL + PAD), top))
        caption = f"{r + 1}. {row['prompt']}"
        if row.get("no_trigger_prompt") is not None:
            caption += f"   |   without trigger: {row['no_trigger_prompt']}"
        for i, line in enumerate(textwrap.wrap(caption, 3 * CELL // 7)[:CAPTION_LINES]):
            draw.text((PAD, top + cell_h + PAD + i * LINE), line, fill=(40, 40, 40), font=_font(13))
        top += cell_h + caption_h
    return out


def _cell_height(image: Image.Image | None, sample_size: tuple[int, int]) -> int:
    width, height = image.size if image is not None else sample_size
    return max(1, round(CELL * height / width))


def rows_from_step(step_folder: Path) -> list[dict]:
    """The grid rows of one samples/step_N folder (its prompts.json names the files)."""
    data = json.loads((step_folder / "prompts.json").read_text("utf-8"))
    rows = []
    for entry in data.get("prompts", []):
        def path(key, entry=entry):
            name = entry.get(key)
            return (step_folder / name).resolve() if name else None

        rows.append({"prompt": entry.get("prompt", ""), "no_trigger_prompt": entry.get("no_trigger_prompt"),
                     "base": path("base"), "lora": path("lora"), "lora_no_trigger": path("lora_no_trigger")})
    return rows


@dataclass(frozen=True)
class RunFacts:
    """What a finished run knows about itself, for its README.txt: `trained_on`, the datasets as the log names them
    (several); `hardware`, the GPU; `preserved`, the class word kept as the base model draws it (preserve_class);
    `leak`, the share of its change its final previews keep without the trigger word (trainer.leak)."""

    trained_on: str = ""
    hardware: str = ""
    preserved: str = ""
    leak: float | None = None


def readme(config, lora_file: str, steps: int, final_loss: float | None, triggers: list[str] | None = None,
           facts: RunFacts | None = None) -> str:
    """`triggers`: every concept's trigger word (a job of several datasets may have several); `facts`: what
    else the run knows about itself (RunFacts)."""
    facts = facts or RunFacts()
    trained_on, hardware, preserved = facts.trained_on, facts.hardware, facts.preserved
    trigger = config.trigger_word.strip()
    words = list(dict.fromkeys(w.strip() for w in (triggers or [trigger]) if w.strip()))
    if len(words) > 1:
        use = (f"Put one of the trigger words ({', '.join(repr(w) for w in words)}) in your prompt: each calls up "
               "the concept its dataset taught.")
    else:
        use = (f'Put the trigger word "{trigger}" in your prompt.' if trigger
               else "This LoRA has no trigger word: it applies to every prompt.")
    extra = (f"Trained on:        {trained_on}\n" if trained_on else "") + (
        f"Started from:      {config.init_lora}\n" if getattr(config, "init_lora", "") else "") + (
        f"Hardware:          {hardware}\n" if hardware else "") + (
        f"Class preserved:   {preserved} (trained to leave '{preserved}' as the base model draws it)\n"
        if preserved else "") + (
        f"Without trigger:   {facts.leak:.0%} of its change remains on the final previews (0%: only the trigger word "
        "calls it up)\n" if facts.leak is not None else "")
    loss = f"{final_loss:.4f}" if final_loss is not None else "n/a"
    models = ", ".join(f"models/{folder}/{name}" for folder, name in MODEL_FILES.items())
    kind = "a LyCORIS LoKr" if getattr(config, "network", "lora") == "lokr" else "a LoRA"
    return f"""{config.name}: {kind} for {zmodel.BASE_REPO}

File:              {lora_file}
Trigger word{"s:    " if len(words) > 1 else ":     "} {", ".join(words) or "(none)"}
{extra}Base model:        {zmodel.BASE_REPO} (Z-Image-Turbo)
Steps:             {steps}
{_network_line(config)}
Resolutions:       {", ".join(str(r) for r in config.resolutions)}
Learning rate:     {config.learning_rate:g}
Final loss:        {loss} (smoothed)
Suggested strength: 1.0 (lower to 0.6-0.8 if it overpowers the prompt)

{use}
Render like the previews: {config.sample_steps} steps, CFG {config.guidance_scale:g} (Turbo uses no guidance).

ComfyUI
  1. Copy {lora_file} into ComfyUI/models/loras/.
  2. Drop {WORKFLOW_NAME} onto ComfyUI's page: Z-Image-Turbo with this LoRA at strength 1.0 and
     the first preview prompt. It expects the Comfy-Org/z_image_turbo files:
     {models}
     (the studio's own ComfyUI, INSTALL_COMFYUI=1, downloads them by itself).
     (Or, in a workflow of your own, add a "LoraLoaderModelOnly" node between the model loader and
     the sampler and pick {lora_file}.)
  3. Queue the prompt.

diffusers
  pipe = ZImagePipeline.from_pretrained("{zmodel.BASE_REPO}", torch_dtype=torch.bfloat16).to("cuda")
  pipe.load_lora_weights("{lora_file}")
  image = pipe("{trigger + ', ' if trigger else ''}a portrait photo", num_inference_steps=9,
               guidance_scale=0.0).images[0]

{GRID_NAME} shows each preview prompt with the LoRA off (the base model), on, and on with the trigger
word removed from the prompt (a LoRA that changes those images leaks into unrelated prompts).
The training adapter ({zmodel.ADAPTER_REPO}) was used only during training and is not in this file.
"""


def write(job_dir: Path, config, lora_path: Path, step_folder: Path | None, steps: int,
          final_loss: float | None, triggers: list[str] | None = None,
          facts: RunFacts | None = None) -> dict[str, Path]:
    """Writes the grid (when a preview step exists), the README and the ComfyUI workflow next to the LoRA."""
    folder = Path(lora_path).parent
    written = {}
    if step_folder is not None and (step_folder / "prompts.json").is_file():
        image = grid(rows_from_step(step_folder), (config.sample_width, config.sample_height))
        from io import BytesIO

        buffer = BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        atomic_write_bytes(folder / GRID_NAME, buffer.getvalue())
        written["grid"] = folder / GRID_NAME
    text = readme(config, Path(lora_path).name, steps, final_loss, triggers, facts)
    atomic_write_bytes(folder / README_NAME, text.encode())
    written["readme"] = folder / README_NAME
    graph = workflow(config, Path(lora_path).name)
    atomic_write_bytes(folder / WORKFLOW_NAME, (json.dumps(graph, indent=1, ensure_ascii=False) + "\n").encode())
    written["workflow"] = folder / WORKFLOW_NAME
    return written


def _network_line(config) -> str:
    if getattr(config, "network", "lora") == "lokr":
        return (f"LoKr factor:       {config.lokr_factor} (w1 and w2 whole, the scale folded into w1: loaders use "
                "scale 1; ComfyUI's LoRA loader reads it)")
    return (f"Rank / alpha:      {config.rank} / {config.lora_alpha:g} (alpha is folded into the weights: loaders use "
            "scale 1)")
