"""A render of Try the LoRA as a ComfyUI workflow: its prompt, seed, size and steps, one picture's LoRA file at that
picture's strength (named as ComfyUI's loras folder has it), the LoRAs it rendered with chained after it."""

from __future__ import annotations

import pytest

from studio.workspace import Workspace
from tests import test_trainer_renders as renders_tests
from tests.test_trainer_library_tries import library_lora, url_of
from tests.test_trainer_renders import REQUEST, finished_job
from trainer import library
from trainer.render_workflow import picked, pictures, workflow

settings, app, client, store = renders_tests.settings, renders_tests.app, renders_tests.client, renders_tests.store
CONFIG = {"prompt": "tok, a red circle", "strengths": [0.0, 0.8, 1.0], "seed": 7, "width": 80, "height": 64,
          "steps": 2, "loras": [{"file": "a", "label": "checkpoint at step 3"}, {"file": "b", "label": "final"}]}


def _loras(nodes: dict) -> list[tuple[str, float]]:
    """(file, strength) of each LoRA loader from the model to the sampler, following the links."""
    chain, node = [], nodes["5"]["inputs"]["model"][0]
    while nodes[node]["class_type"] == "LoraLoaderModelOnly":
        chain.append((nodes[node]["inputs"]["lora_name"], nodes[node]["inputs"]["strength_model"]))
        node = nodes[node]["inputs"]["model"][0]
    assert nodes[node]["class_type"] == "UNETLoader"
    return chain[::-1]


def test_the_pictures_and_the_one_picked():
    assert pictures(CONFIG) == [(None, 0.0), (0, 0.8), (0, 1.0), (1, 0.8), (1, 1.0)]
    assert picked(CONFIG, None) == (1, 1.0)  # the last file (the final LoRA) at 1
    assert picked({**CONFIG, "strengths": [0.0, 0.6, -1.5]}, None) == (1, -1.5)  # else at its strongest
    assert picked(CONFIG, 1) == (0, 0.8) and picked(CONFIG, 0) == (None, 0.0)
    beside = {**CONFIG, "loras": [*CONFIG["loras"], {"file": "c", "label": "other", "library": True}]}
    assert picked(beside, None) == (1, 1.0)  # the render's own, not the one shown beside it
    with pytest.raises(ValueError, match="has 5 pictures"):
        picked(CONFIG, 5)


def test_the_graph_chains_the_lora_and_what_it_rendered_with():
    config = {**CONFIG, "with": [{"file": "style.safetensors", "strength": 0.5, "label": "style"}]}
    nodes, name = workflow(config, ["x-step3.safetensors", "x.safetensors"])
    assert _loras(nodes) == [("x.safetensors", 1.0), ("style.safetensors", 0.5)]
    assert name == "x-seed7-comfyui-workflow.json"
    assert workflow(config, ['a "b".safetensors', 'c.safetensors'], image=1)[1] == 'a-b--seed7-comfyui-workflow.json'
    assert nodes["6"]["inputs"]["text"] == "tok, a red circle"
    assert (nodes["9"]["inputs"]["seed"], nodes["9"]["inputs"]["steps"]) == (7, 2)
    assert (nodes["8"]["inputs"]["width"], nodes["8"]["inputs"]["height"]) == (80, 64)
    base, _name = workflow(config, ["x-step3.safetensors", "x.safetensors"], image=0)
    assert _loras(base) == [("style.safetensors", 0.5)]  # the picture without the LoRA tried


def test_a_job_renders_workflow_names_its_files_as_comfyui_has_them(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    space = Workspace(settings.root)
    library.publish(space, job, space.jobs / job.id / "lora" / "tiny-lora.safetensors")
    store.update(job.id, result={**(job.result or {}), "library_file": "tiny-lora.safetensors"})
    # the Try panel leaves the job's own library file out of what it renders with or beside
    assert client.get(f"/api/jobs/{job.id}/renders").get_json()["defaults"]["library_file"] == "tiny-lora.safetensors"
    made = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "lora": "all"}).get_json()["render"]
    url = f"/api/jobs/{job.id}/renders/{made['id']}/workflow"
    answer = client.get(url)
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == 'attachment; filename="tiny-lora-seed7-comfyui-workflow.json"'
    assert _loras(answer.get_json()) == [("tiny-lora.safetensors", 1.0)]
    # the checkpoint's picture: under the name To library gives it
    assert _loras(client.get(f"{url}?image=1").get_json()) == [(library.checkpoint_name(job, 3), 1.0)]
    for image, status in (("9", 422), ("x", 422), ("-1", 422)):
        assert client.get(f"{url}?image={image}").status_code == status, image
    odd = store.create("render", parent_id=job.id, config={})[0]
    assert client.get(f"/api/jobs/{job.id}/renders/{odd.id}/workflow").status_code == 409
    assert client.get(f"/api/jobs/{job.id}/renders/nope/workflow").status_code == 404


def test_a_library_renders_workflow(client, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    style = library_lora(settings, demo_paths, "style.safetensors")
    made = client.post(url_of(path), json={**REQUEST, "with": [{"file": style.name, "strength": 0.7}]}).get_json()
    nodes = client.get(f"{url_of(path)}/{made['render']['id']}/workflow").get_json()
    assert _loras(nodes) == [("found-lora.safetensors", 1.0), ("style.safetensors", 0.7)]
    assert client.get(f"{url_of(style)}/{made['render']['id']}/workflow").status_code == 404  # not its render


def test_a_guided_render_or_preview_is_guided_in_comfyui_as_in_the_studio():
    """The workflows ran ComfyUI's Turbo template (cfg 1, no negative) whatever guidance the render or the preview
    had: a prompt rendered with guidance 3 came out unguided in ComfyUI. diffusers' pos + g * (pos - neg) is ComfyUI's
    cfg 1 + g."""
    from tests.test_engine_train import tiny_config
    from trainer.engine.comfy_workflow import workflow as job_workflow

    turbo, _name = workflow(CONFIG, ["a.safetensors", "b.safetensors"])
    assert turbo["9"]["inputs"]["cfg"] == 1.0 and turbo["7"]["class_type"] == "ConditioningZeroOut"
    guided, _name = workflow({**CONFIG, "guidance_scale": 3.0}, ["a.safetensors", "b.safetensors"])
    assert guided["9"]["inputs"]["cfg"] == 4.0
    assert guided["7"]["class_type"] == "CLIPTextEncode" and guided["7"]["inputs"] == {"text": "", "clip": ["2", 0]}
    assert guided["9"]["inputs"]["negative"] == ["7", 0]

    job = job_workflow(tiny_config(sample_prompts=["[trigger], a red circle --l 4 --n blurry, [trigger]"],
                                   trigger_word="tok"), "tiny.safetensors")
    assert job["9"]["inputs"]["cfg"] == 5.0
    assert job["7"]["inputs"]["text"] == "blurry, tok" and job["6"]["inputs"]["text"] == "tok, a red circle"
    plain = job_workflow(tiny_config(sample_prompts=["a red circle"]), "tiny.safetensors")
    assert plain["9"]["inputs"]["cfg"] == 1.0 and plain["7"]["class_type"] == "ConditioningZeroOut"
