"""Options inside a preview prompt, as kohya and ai-toolkit write them (--w 832 --h 1216 --d 7 ...): read into the
preview's size, seed, steps, guidance, negative prompt and LoRA strength, never left in the text the model sees;
values out of range brought into it and unknown options left out, both said in the form's advice; the previews,
the estimate, the proof grid, the ComfyUI workflow and the Try form follow them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests import test_trainer_api
from tests.test_engine_train import make_dataset, tiny_config
from tests.test_trainer_worker import TINY_CONFIG, make_export
from trainer.preview_prompts import parse, preview_prompts
from trainer.recipes import get_recipe
from trainer.recipes.zimage_plan import estimate

app, client = test_trainer_api.app, test_trainer_api.client
JOB = SimpleNamespace(sample_width=1024, sample_height=1024, seed=42, sample_steps=9, guidance_scale=0.0)


def test_options_are_read_and_leave_the_text():
    prompt = parse("a portrait of [trigger] --w 832 --h 1216 --d 7 --s 12", JOB, 3)
    assert (prompt.text, prompt.width, prompt.height, prompt.seed, prompt.steps) == (
        "a portrait of [trigger]", 832, 1216, 7, 12)
    assert prompt.notes == () and prompt.guidance == 0.0 and prompt.strength == 1.0
    # the long names ai-toolkit adds, any case; guidance with its negative prompt (the rest of the option)
    long = parse("a cat --seed 5 --STEPS 4 --cfg 3.5 --n blurry, low quality --m 0.7", JOB)
    assert (long.text, long.seed, long.steps, long.guidance, long.negative, long.strength) == (
        "a cat", 5, 4, 3.5, "blurry, low quality", 0.7)
    # without options: the job's settings, the seed counting up from the job's by the prompt's place
    plain = parse("a dog", JOB, 2)
    assert (plain.width, plain.height, plain.seed, plain.steps, plain.guidance) == (1024, 1024, 44, 9, 0.0)
    # dashes that are not an option stay text
    assert parse("a -- b, x--y, --5 cats", JOB).text == "a -- b, x--y, --5 cats"


def test_values_out_of_range_are_brought_in_and_unknown_options_left_out():
    prompt = parse("a cat --w 100 --h 9000 --s 0 --m 3 --l 30 --x 5 --d 2.5 --seed", JOB)
    assert prompt.text == "a cat"
    assert (prompt.width, prompt.height, prompt.steps, prompt.strength, prompt.guidance, prompt.seed) == (
        96, 4096, 1, 2.0, 20.0, 2)
    notes = " | ".join(prompt.notes)
    for words in ("--w 100 is not a multiple of 16; 96 is used.", "--h 9000 is outside 64-4096; 4096 is used.",
                  "--s 0 is outside 1-100; 1 is used.", "--m 3 is outside 0-2; 2 is used.",
                  "--x is not a preview option here", "--d takes a whole number; 2 is used.",
                  "--seed needs a number, not ''; the job's setting is used."):
        assert words in notes, (words, notes)
    # a negative prompt needs guidance (Z-Image-Turbo previews render without it)
    alone = parse("a cat --n ugly", JOB)
    assert alone.negative == "" and "used only with a guidance scale above 0" in alone.notes[0]
    assert parse("a cat --l 1 --n ugly", JOB).negative == "ugly"  # guided at 1: the negative prompt counts
    assert "no text before its options" in parse("--w 512", JOB).notes[0]
    stray = parse("[trigger] photo --w 832 extra words --h 1216", JOB)  # words between options are said, not lost
    assert (stray.text, stray.width, stray.height) == ("[trigger] photo", 832, 1216)
    assert stray.notes == ("--w 832 extra words: 'extra words' is left out of the prompt (only words before the "
                           "first option are the prompt's).",)


def test_the_form_warns_and_never_refuses():
    recipe = get_recipe("zimage-turbo")
    config = recipe.config_from_dict({"sample_prompts": ["[trigger] a cat --w 100", "a dog --bogus 1"]})
    notes = [n for n in config.advice() if n["field"] == "sample_prompts"]
    assert [n["message"].split(":")[0] for n in notes] == ["Preview prompt 1", "Preview prompt 2"]
    assert "96 is used" in notes[0]["message"] and "--bogus" in notes[1]["message"]
    assert "--w 832 --h 1216" in {f["name"]: f for f in recipe.form_fields()}["sample_prompts"]["help"]


def test_the_estimate_counts_each_prompts_size_and_steps():
    recipe = get_recipe("zimage-turbo")
    base = {"steps": 1000, "sample_every": 250, "sample_prompts": ["a cat", "a dog"]}
    square = recipe.config_from_dict(base)
    bigger = recipe.config_from_dict({**base, "sample_prompts": ["a cat --w 1536 --h 1536 --s 18", "a dog"]})
    gpu = "NVIDIA H100 80GB HBM3"
    assert estimate(bigger, 20, gpu, demo=False).seconds > estimate(square, 20, gpu, demo=False).seconds
    assert estimate(bigger, 20, gpu, demo=False).disk_gb > estimate(square, 20, gpu, demo=False).disk_gb
    assert [p.area for p in preview_prompts(bigger)] == [2.25, 1.0]


def test_the_try_form_starts_from_the_first_prompt_with_its_own_size(client, app):
    dataset = make_export(app.config["STUDIO_SETTINGS"].root).name
    config = {**TINY_CONFIG, "sample_prompts": ["[trigger] a red circle --w 96 --h 64 --s 3", "a square"]}
    body = {"name": "options job", "recipe": "zimage-turbo", "dataset": dataset, "config": config}
    job_id = client.post("/api/jobs", json=body).get_json()["job"]["id"]
    defaults = client.get(f"/api/jobs/{job_id}/renders").get_json()["defaults"]
    assert (defaults["prompt"], defaults["width"], defaults["height"], defaults["steps"]) == (
        "[trigger] a red circle", 96, 64, 3)


@pytest.mark.slow
def test_previews_follow_their_prompts_options(tmp_path, demo_paths):
    from trainer.engine import TrainingControl, train

    dataset = make_dataset(tmp_path / "datasets" / "toy")
    job = tmp_path / "jobs" / "options"
    cfg = tiny_config(steps=4, sample_every=4, save_every=4, sample_steps=2, sample_prompts=[
        "zkw a yellow square --w 96 --h 64 --d 5 --s 3", "zkw a circle --m 0", "a red square"])
    result = train(cfg, dataset, job, demo_paths, TrainingControl(job), None, device="cpu",
                   cache_dir=tmp_path / "cache")
    step = job / "samples" / "step_000004"
    entries = json.loads((step / "prompts.json").read_text())["prompts"]
    # the model saw the text alone; each prompt's own settings are kept for the pages
    assert [e["prompt"] for e in entries] == ["zkw a yellow square", "zkw a circle", "zkw, a red square"]
    assert entries[0]["options"] == {"width": 96, "height": 64, "seed": 5, "steps": 3} and entries[0]["seed"] == 5
    assert entries[1]["options"] == {"strength": 0.0} and "options" not in entries[2]
    for name in ("0.png", "0_notrigger.png"):
        assert Image.open(step / name).size == (96, 64)
    assert Image.open(job / "samples" / "base" / "0.png").size == (96, 64)
    assert Image.open(step / "2.png").size == (64, 64)
    # --m 0: the LoRA at strength 0 draws what the base model draws
    assert np.array_equal(np.asarray(Image.open(step / "1.png")), np.asarray(Image.open(job / "samples" / "base" /
                                                                                            "1.png")))
    # the ComfyUI workflow starts from the first prompt with its own size, seed and steps
    folder = job / "lora"
    graph = json.loads((folder / "comfyui_workflow.json").read_text())
    latent = next(n for n in graph.values() if n["class_type"] == "EmptySD3LatentImage")["inputs"]
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
    text = next(n for n in graph.values() if n["class_type"] == "CLIPTextEncode")["inputs"]["text"]
    assert (latent["width"], latent["height"], sampler["seed"], sampler["steps"], text) == (
        96, 64, 5, 3, "zkw a yellow square")
    # the proof grid gives each row its pictures' shape: the wide first row is lower than the square ones
    from trainer.engine.proof import CAPTION_LINES, CELL, HEADER, LINE, PAD

    rows = [round(CELL * 64 / 96), CELL, CELL]
    assert Image.open(folder / "proof_grid.png").size[1] == HEADER + sum(rows) + 3 * (2 * PAD + CAPTION_LINES * LINE)
    assert result["steps"] == 4
