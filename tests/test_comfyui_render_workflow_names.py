"""The ComfyUI workflow of a Try-the-LoRA render names each LoRA as ComfyUI's loras folder has it (a LoRA added to the
library from a subfolder of ComfyUI's, or under another name, by its ComfyUI name), and its download name is one a
server can put in a header whatever the LoRA is called."""

from __future__ import annotations

import shutil

from studio.workspace import Workspace
from tests import test_trainer_renders as renders_tests
from tests.test_render_workflow import CONFIG, _loras
from tests.test_trainer_library_tries import library_lora, url_of
from tests.test_trainer_renders import REQUEST
from trainer import library
from trainer.render_workflow import workflow

settings, app, client, store = renders_tests.settings, renders_tests.app, renders_tests.client, renders_tests.store


def test_a_lora_added_from_a_comfyui_subfolder_is_named_in_the_workflow_as_comfyui_has_it(client, settings,
                                                                                          demo_paths):
    space = Workspace(settings.root)
    comfy = space.root / "ComfyUI" / "models" / "loras" / "styles"
    comfy.mkdir(parents=True)
    made = library_lora(settings, demo_paths, "made here.safetensors")
    shutil.move(made, comfy / "ink wash.safetensors")  # a LoRA ComfyUI had before the studio
    added = client.post("/api/library/comfyui/styles/ink%20wash.safetensors/add")
    assert added.status_code == 201, added.get_json()
    style = space.loras / added.get_json()["file"]
    assert style.name == "ink-wash.safetensors"  # the library's name for it
    main = library_lora(settings, demo_paths)
    library.also_in_comfyui(space, main)  # one of the library's own: placed in ComfyUI's loras under its name
    render = client.post(url_of(main), json={**REQUEST, "with": [{"file": style.name, "strength": 0.7}]}).get_json()
    nodes = client.get(f"{url_of(main)}/{render['render']['id']}/workflow").get_json()
    assert _loras(nodes) == [("found-lora.safetensors", 1.0), ("styles/ink wash.safetensors", 0.7)]
    own = client.post(url_of(style), json=REQUEST).get_json()
    assert _loras(client.get(f"{url_of(style)}/{own['render']['id']}/workflow").get_json()) == [
        ("styles/ink wash.safetensors", 1.0)]
    (comfy / "ink wash.safetensors").unlink()  # gone from ComfyUI: the library's name is all there is
    assert _loras(client.get(f"{url_of(style)}/{own['render']['id']}/workflow").get_json()) == [
        ("ink-wash.safetensors", 1.0)]


def test_the_workflows_download_name_is_plain_ascii_whatever_the_lora_is_called():
    for names, expected in (((["猫.safetensors", "猫.safetensors"]), "seed7-comfyui-workflow.json"),
                            ((["a.safetensors", "café noir.safetensors"]), "cafe-noir-seed7-comfyui-workflow.json"),
                            ((["a.safetensors", "x.safetensors"]), "x-seed7-comfyui-workflow.json")):
        name = workflow(CONFIG, names)[1]  # outside a request: the names as given
        assert name == expected
        name.encode("latin-1")  # what gunicorn writes a header's value in


def test_a_render_of_a_lora_with_a_chinese_name_downloads_its_workflow(client, settings, demo_paths):
    path = library_lora(settings, demo_paths, "猫.safetensors")
    render = client.post(url_of(path), json=REQUEST).get_json()
    answer = client.get(f"{url_of(path)}/{render['render']['id']}/workflow")
    assert answer.status_code == 200
    answer.headers["Content-Disposition"].encode("latin-1")
    assert _loras(answer.get_json()) == [("猫.safetensors", 1.0)]
