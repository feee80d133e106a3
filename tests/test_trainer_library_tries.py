"""Try a file of the LoRA library that no training job made (a LoRA added from a link, a smaller copy): its
renders through the API and the worker on the real tiny Z-Image pipeline, its page, and what happens when the
file goes. And any render with another library LoRA on every image ("with": a style under a character), or beside
the one tried ("beside": the original and its smaller copy, side by side)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio.workspace import Workspace
from tests import test_trainer_renders as renders_tests
from tests.test_trainer_renders import REQUEST, FakeSession, make_lora
from trainer import renders, renders_api
from trainer.engine.checkpoints import write_lora_file
from trainer.validation import Gpu
from trainer.worker import Worker

# the render tests' studio (demo models, renders not kept warm, links to this machine allowed)
settings, app, client, store = renders_tests.settings, renders_tests.app, renders_tests.client, renders_tests.store


def library_lora(settings, demo_paths, name: str = "found-lora.safetensors", trigger: str | None = "zqx"):
    """A LoRA of the tiny transformer in trainer/loras, as a LoRA added from a link would be."""
    path = Workspace(settings.root).loras / name
    path.parent.mkdir(parents=True, exist_ok=True)
    make_lora(demo_paths, path)
    if trigger is not None:  # its metadata names its trigger word, as kohya's and ours do
        from safetensors.torch import load_file

        write_lora_file(path, load_file(path), {"rank": "4", "modelspec.trigger_phrase": trigger})
    return path


def url_of(path) -> str:
    return f"/api/library/files/{path.name}/renders"


def test_a_library_file_is_listed_with_its_own_defaults(client, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    listing = client.get(url_of(path)).get_json()
    assert listing["renders"] == [] and listing["loras"] == [{"value": "final", "label": "found-lora", "step": None}]
    defaults = listing["defaults"]
    assert defaults["trigger_word"] == "zqx" and defaults["prompt"] == "[trigger], "  # from the file's metadata
    assert (defaults["width"], defaults["height"], defaults["steps"]) == (64, 64, 2)  # the demo's tiny model
    real = renders.parse_library({"prompt": "a cat"}, path.name, "", "none")  # Turbo's own sampling on a pod
    assert (real["width"], real["height"], real["steps"], real["guidance_scale"]) == (1024, 1024, 9, 0.0)
    assert client.get("/api/library/files/nope.safetensors/renders").status_code == 404
    plain = library_lora(settings, demo_paths, "plain.safetensors", trigger=None)
    assert client.get(url_of(plain)).get_json()["defaults"]["prompt"] == ""  # no trigger word to stand in for


def test_a_library_render_is_queued_checked_and_deleted(client, store, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    response = client.post(url_of(path), json=REQUEST)
    assert response.status_code == 202
    queued = response.get_json()["render"]
    assert queued["prompt"] == "zqx, a red circle"  # the file's trigger word for [trigger]
    assert queued["loras"] == [{"file": "found-lora.safetensors", "step": None, "final": True, "label": "found-lora",
                                "library": True}]
    render = store.get(queued["id"])
    assert render.parent_id is None and renders.library_file_of(render) == "found-lora.safetensors"
    assert render.config["quantize_base"] == "none"  # no GPU here
    assert client.post(url_of(path), json=REQUEST).get_json()["render"]["id"] == queued["id"]  # a double click
    assert [r["id"] for r in client.get(url_of(path)).get_json()["renders"]] == [queued["id"]]
    for body, words in [({**REQUEST, "lora": 3}, "one LoRA"), ({**REQUEST, "width": 100}, "multiple of 16"),
                        ({"prompt": " "}, "Type a prompt")]:
        answer = client.post(url_of(path), json=body)
        assert answer.status_code == 422 and words in answer.get_json()["error"], body
    # not a LoRA of Z-Image's layers: refused before anything waits for the GPU
    (path.parent / "notes.safetensors").write_bytes(b"not a safetensors file")
    answer = client.post("/api/library/files/notes.safetensors/renders", json=REQUEST)
    assert answer.status_code == 422 and "not a .safetensors file" in answer.get_json()["error"]
    # another file's render is not this one's to delete
    other = library_lora(settings, demo_paths, "other.safetensors")
    assert client.delete(f"{url_of(other)}/{queued['id']}").status_code == 404
    assert client.delete(f"{url_of(path)}/{queued['id']}").get_json()["deleted"] is True
    assert client.get(url_of(path)).get_json()["renders"] == []


def test_the_queue_of_a_library_file_is_bounded(client, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    for seed in range(renders.MAX_WAITING):
        assert client.post(url_of(path), json={**REQUEST, "seed": seed}).status_code == 202
    answer = client.post(url_of(path), json={**REQUEST, "seed": 99})
    assert answer.status_code == 429 and "found-lora.safetensors are waiting already" in answer.get_json()["error"]


@pytest.mark.parametrize(("memory_gb", "quantize"), [(16.0, "float8"), (24.0, "float8"), (48.0, "none"),
                                                    (80.0, "none")])
def test_a_library_render_holds_the_base_model_as_the_gpu_allows(client, store, settings, demo_paths, monkeypatch,
                                                                  memory_gb, quantize):
    """No training job says how much memory there is: a card under 30 GB renders with the float8 base, as its
    memory presets train."""
    monkeypatch.setattr(renders_api, "detect_gpu", lambda: Gpu("NVIDIA test", memory_gb))
    path = library_lora(settings, demo_paths)
    config = store.get(client.post(url_of(path), json=REQUEST).get_json()["render"]["id"]).config
    assert (config["quantize_base"], config["float8_matmuls"]) == (quantize, quantize == "float8")


@pytest.mark.slow
def test_the_worker_renders_a_library_file_and_serves_its_images(client, store, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    made = client.post(url_of(path), json=REQUEST).get_json()["render"]
    done = Worker(settings, poll_s=0.1, unload_caption=False).run_once()
    assert done.id == made["id"] and done.status == "completed", done.error
    shown = client.get(url_of(path)).get_json()["renders"][0]
    assert [image["strength"] for image in shown["images"]] == [0, 1]
    pictures = []
    for image in shown["images"]:
        assert image["url"].startswith(f"/api/library/tries/{made['id']}/")
        response = client.get(image["url"])
        assert response.status_code == 200 and response.mimetype == "image/png"
        pictures.append(Image.open(io.BytesIO(response.data)).convert("RGB"))
    assert pictures[0].size == (80, 64) and pictures[0].tobytes() != pictures[1].tobytes()  # the LoRA shows
    tries = Workspace(settings.root).trainer / renders.TRIES_DIR
    assert "found-lora.safetensors at strengths 0, 1" in (tries / made["id"] / "log.txt").read_text()
    assert client.get(shown["images"][0]["url"] + "?thumb=1").mimetype == "image/webp"
    # its library card shows them (a file no job made has no previews of its own)
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == path.name)
    assert card["samples"] == {"urls": [image["url"] for image in shown["images"]],
                               "prompts": ["Base: zqx, a red circle", "LoRA 1: zqx, a red circle"]}
    assert (tries / ".thumbs" / made["id"]).is_dir()
    # deleting the file from the library takes its renders, their images and previews into Recently deleted
    gone = client.delete(f"/api/library/files/{path.name}")
    assert gone.status_code == 200
    assert store.find(made["id"]) is None
    assert not (tries / made["id"]).exists() and not (tries / ".thumbs" / made["id"]).exists()
    # and brought back, the file has them again, pictures and all
    assert client.post(f"/api/trash/{gone.get_json()['trash']}/restore").status_code == 200
    back = client.get(url_of(path)).get_json()["renders"]
    assert [render["id"] for render in back] == [made["id"]] and back[0]["status"] == "completed"
    assert [client.get(image["url"]).data for image in back[0]["images"]] == [
        client.get(image["url"]).data for image in shown["images"]] and pictures


def test_a_library_file_cannot_go_while_it_renders(client, store, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    made = client.post(url_of(path), json=REQUEST).get_json()["render"]
    store.start(made["id"], "worker-1")
    answer = client.delete(f"/api/library/files/{path.name}")
    assert answer.status_code == 409 and "being rendered now" in answer.get_json()["error"]
    assert path.is_file() and store.find(made["id"]) is not None


def test_a_render_of_a_file_deleted_while_it_waited_is_dropped(client, store, settings, demo_paths):
    from trainer.render_job import execute

    path = library_lora(settings, demo_paths)
    made = client.post(url_of(path), json=REQUEST).get_json()["render"]
    path.unlink()  # by hand, say: the API would have taken its renders along
    store.start(made["id"], "me")
    session = FakeSession()
    assert execute(settings, made["id"], session=session) == 1
    assert store.find(made["id"]) is None and session.calls == []


def test_a_library_render_never_reads_or_serves_outside_its_folders(client, store, settings, demo_paths):
    from trainer.render_job import execute

    path = library_lora(settings, demo_paths)
    config = renders.parse_library(REQUEST, path.name, "", "none")
    config[renders.LIBRARY_FILE] = "../studio.db"
    made = store.create(renders.KIND, name="x", config=config, total=2)[0]
    store.start(made.id, "me")
    session = FakeSession()
    assert execute(settings, made.id, session=session) == 1
    ended = store.get(made.id)
    assert ended.status == "failed" and "points outside its folder" in ended.error and session.calls == []
    good = client.post(url_of(path), json=REQUEST).get_json()["render"]
    for url in (f"/api/library/tries/{good['id']}/../../studio.db", f"/api/library/tries/{good['id']}/%2e%2e/x",
                "/api/library/tries/nope/0.png"):
        assert client.get(url).status_code in (400, 404), url
    # a training job's render is not served as a library file's
    job_render = store.create(renders.KIND, name="y", parent_id="some-job", config={"loras": []}, total=1)[0]
    assert client.get(f"/api/library/tries/{job_render.id}/log.txt").status_code == 404


def test_the_try_page_of_a_library_file(client, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    page = client.get(f"/library/try/{path.name}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-api="/api/library/files/found-lora.safetensors"' in html and "rank 4" in html
    assert '<span class="chip">zqx</span>' in html and "job_try.js" in html and "stands for it)" in html
    merged = library_lora(settings, demo_paths, "merged.safetensors", trigger="zqx, inkstyle")  # a merge of two
    html = client.get(f"/library/try/{merged.name}").get_data(as_text=True)
    assert '<span class="chip">zqx</span> <span class="chip">inkstyle</span>' in html and "stands for them all" in html
    assert client.get("/library/try/missing.safetensors").status_code == 404
    assert client.get("/library/try/..%2fstudio.db").status_code in (400, 404)


def _rendered(client, settings, name: str) -> list[dict]:
    """The images of REQUEST rendered with the library file `name` (the worker run once)."""
    made = client.post(f"/api/library/files/{name}/renders", json=REQUEST).get_json()["render"]
    done = Worker(settings, poll_s=0.1, unload_caption=False).run_once()
    assert done.id == made["id"] and done.status == "completed", done.error
    return client.get(f"/api/library/files/{name}/renders").get_json()["renders"][0]["images"]


@pytest.mark.slow
def test_a_kohya_lora_from_a_link_renders_as_the_same_lora_in_our_names(client, store, settings, demo_paths):
    """A LoRA written with kohya's (musubi-tuner's) names, lora_down/lora_up and alpha, added from a link: converted
    on the way in, it renders exactly what the same LoRA in this studio's names renders."""
    from tests.helpers import files_handler, serving
    from tests.test_lora_import import _import
    from trainer.lora_resize import encode, read_tensors

    ours = library_lora(settings, demo_paths, "ours.safetensors", trigger=None)
    _header, tensors = read_tensors(ours)
    kohya = {}
    for key, value in tensors.items():
        module = "lora_unet_" + key.removeprefix("diffusion_model.").rsplit(".lora_", 1)[0].replace(".", "_")
        if ".lora_A." in key:
            kohya[f"{module}.lora_down.weight"] = value
            kohya[f"{module}.alpha"] = np.array(value.shape[0], np.float32)  # alpha = rank: a scale of 1
        else:
            kohya[f"{module}.lora_up.weight"] = value
    with serving(files_handler({"/musubi.safetensors": ("application/octet-stream", {}, encode(kohya, "BF16", {}))})) \
            as web:
        job = _import(client, f"{web}/musubi.safetensors")
    assert job["status"] == "completed", job
    assert job["message"] == "Added musubi.safetensors (rank 4, converted from kohya's key names) to the library."
    rendered = [[client.get(image["url"]).data for image in _rendered(client, settings, name)]
                for name in ("ours.safetensors", "musubi.safetensors")]
    assert rendered[0][1] == rendered[1][1]  # the LoRA at strength 1: the same picture
    assert rendered[1][0] != rendered[1][1]  # and it does change the picture


@pytest.mark.slow
def test_a_loha_from_a_link_renders_as_the_lora_of_the_same_change(client, store, settings, demo_paths):
    """A LyCORIS LoHa whose second product is all ones has the change of a LoRA (its first product): added from a
    link, brought to a LoRA on the way in, it renders the picture that LoRA renders."""
    from tests.helpers import files_handler, serving
    from tests.test_lora_import import _import
    from trainer.lora_resize import encode, read_tensors

    ours = library_lora(settings, demo_paths, "plain-lora.safetensors", trigger=None)
    _header, tensors = read_tensors(ours)
    loha = {}
    for key, down in tensors.items():
        if ".lora_A." not in key:
            continue
        up = tensors[key.replace(".lora_A.", ".lora_B.")]
        module = "lycoris_" + key.removeprefix("diffusion_model.").rsplit(".lora_", 1)[0].replace(".", "_")
        loha.update({f"{module}.hada_w1_a": up, f"{module}.hada_w1_b": down,
                     f"{module}.hada_w2_a": np.ones((up.shape[0], 1), np.float32),
                     f"{module}.hada_w2_b": np.ones((1, down.shape[1]), np.float32),
                     f"{module}.alpha": np.array(down.shape[0], np.float32)})  # alpha = dim: a scale of 1
    with serving(files_handler({"/loha.safetensors": ("application/octet-stream", {}, encode(loha, "F32", {}))})) \
            as web:
        job = _import(client, f"{web}/loha.safetensors")
    assert job["status"] == "completed", job
    assert job["message"] == ("Added loha.safetensors (rank 4, converted from LyCORIS' key names and a LyCORIS LoHa of "
                              "dim 4, exactly) to the library.")
    rendered = [[np.asarray(Image.open(io.BytesIO(client.get(image["url"]).data)), np.int16)
                 for image in _rendered(client, settings, name)]
                for name in ("plain-lora.safetensors", "loha.safetensors")]
    assert np.abs(rendered[0][1] - rendered[1][1]).max() <= 1  # the same picture (to float32's rounding)
    assert np.abs(rendered[1][0] - rendered[1][1]).max() > 10  # and it does change the picture


# -- rendering with another library LoRA on every image ----------------------------------------------------
def test_a_stacked_lora_applies_to_every_image_the_base_models_too(demo_paths, tmp_path):
    """The base model with a style LoRA at 1 is exactly the style LoRA tried at 1 on its own (same seed); with it
    stacked, the LoRA tried changes the picture still."""
    from trainer.engine.try_lora import TryRequest, render

    tried = make_lora(demo_paths, tmp_path / "character.safetensors")
    style = make_lora(demo_paths, tmp_path / "style.safetensors")
    request = TryRequest(prompt="tok", strengths=(0.0, 1.0), seed=3, width=64, height=64, steps=2, guidance_scale=0)
    lines = []
    both = render(request, [tried], demo_paths, tmp_path / "both", device="cpu", log=lines.append,
                  stack=[(style, 1.0, "style")])
    alone = render(request, [style], demo_paths, tmp_path / "alone", device="cpu", log=lambda _line: None)
    pixels = {name: [Image.open(tmp_path / name / image["file"]).tobytes() for image in images]
              for name, images in (("both", both), ("alone", alone))}
    assert pixels["both"][0] == pixels["alone"][1]  # base + style at 1 == style tried at 1
    assert pixels["both"][1] != pixels["both"][0]
    assert "Every image with style at 1." in lines


def test_what_a_render_is_to_use_too_is_checked(client, store, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    style = library_lora(settings, demo_paths, "style.safetensors")
    (path.parent / "junk.safetensors").write_bytes(b"junk")
    url = url_of(path)
    cases = [("style.safetensors", "at most 2 library LoRAs"), ([{"strength": 1}], "at most 2 library LoRAs"),
             ([{"file": "nope.safetensors"}], "has no 'nope.safetensors'"),
             ([{"file": "../studio.db"}], "has no '../studio.db'"),
             ([{"file": "junk.safetensors"}], "not a .safetensors file"),
             ([{"file": "style.safetensors", "strength": 0}], "other than 0"),
             ([{"file": "style.safetensors", "strength": 3}], "between -2 and 2"),
             ([{"file": "style.safetensors"}, {"file": "style.safetensors"}], "named twice"),
             ([{"file": "style.safetensors"}] * 3, "at most 2"),
             ([{"file": path.name}], "is the LoRA this render tries")]
    for value, words in cases:
        answer = client.post(url, json={**REQUEST, "with": value})
        assert answer.status_code == 422 and words in answer.get_json()["error"], (value, answer.get_json())
    made = client.post(url, json={**REQUEST, "with": [{"file": style.name, "strength": 0.8}]}).get_json()["render"]
    assert made["with"] == [{"file": "style.safetensors", "strength": 0.8, "label": "style"}]
    assert client.post(url, json={**REQUEST, "with": []}).get_json()["render"]["with"] == []


@pytest.mark.slow
def test_the_worker_renders_with_a_stacked_lora_and_fails_when_it_went(client, store, settings, demo_paths):
    path = library_lora(settings, demo_paths)
    style = library_lora(settings, demo_paths, "style.safetensors")
    body = {**REQUEST, "with": [{"file": style.name, "strength": 0.8}]}
    made = client.post(url_of(path), json=body).get_json()["render"]
    done = Worker(settings, poll_s=0.1, unload_caption=False).run_once()
    assert done.id == made["id"] and done.status == "completed", done.error
    log = (Workspace(settings.root).trainer / renders.TRIES_DIR / made["id"] / "log.txt").read_text()
    assert "seed 7, with style.safetensors at 0.8." in log and "Every image with style at 0.8." in log
    # the LoRA it was to use too is deleted before it renders: it fails saying so, and nothing else is lost
    again = client.post(url_of(path), json={**body, "seed": 8}).get_json()["render"]
    assert client.delete(f"/api/library/files/{style.name}").status_code == 200
    failed = Worker(settings, poll_s=0.1, unload_caption=False).run_once()
    assert failed.id == again["id"] and failed.status == "failed"
    assert "style.safetensors, which this render was to use too, was deleted" in failed.error
    assert store.get(made["id"]).status == "completed"


def test_a_checkpoint_in_the_library_shows_its_steps_previews(client, store, settings, demo_paths):
    from tests.test_trainer_renders import finished_job
    from trainer import library

    job = finished_job(store, settings.root, demo_paths)
    space = Workspace(settings.root)
    step_dir = space.jobs / job.id / "samples" / "step_000003"
    step_dir.mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(step_dir / "0.png")
    (step_dir / "prompts.json").write_text('[{"prompt": "tok, a red circle", "seed": 1}]')
    name, _placed = library.publish_checkpoint(space, job, 3)
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == name)
    assert card["checkpoint_of"]["step"] == 3
    picture = f"/api/jobs/{job.id}/files/samples/step_000003/0.png"
    assert [pair["lora"] for pair in card["samples"]["pairs"]] == [picture] and card["samples"]["urls"] == [picture]


# -- library LoRAs side by side with the one tried --------------------------------------------------------
def test_what_a_render_shows_beside_it_is_checked(client, store, settings, demo_paths):
    from tests.test_trainer_renders import finished_job

    path = library_lora(settings, demo_paths)
    other = library_lora(settings, demo_paths, "other.safetensors")
    for value, words in [("other.safetensors", "at most 3 library LoRA files"), ([5], "at most 3"),
                         (["nope.safetensors"], "has no 'nope.safetensors' to render beside"),
                         ([other.name, other.name], "names a LoRA twice"),
                         ([path.name], "is the LoRA this render tries"),
                         ([other.name] * 4, "at most 3")]:
        answer = client.post(url_of(path), json={**REQUEST, "beside": value})
        assert answer.status_code == 422 and words in answer.get_json()["error"], (value, answer.get_json())
    made = client.post(url_of(path), json={**REQUEST, "beside": [other.name]}).get_json()["render"]
    assert [lora["file"] for lora in made["loras"]] == ["found-lora.safetensors", "other.safetensors"]
    # beside a job's LoRA too: the job's final LoRA, then the library's
    job = finished_job(store, settings.root, demo_paths)
    made = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "beside": [other.name]}).get_json()["render"]
    assert [(lora["file"], lora.get("library")) for lora in made["loras"]] == [
        ("lora/tiny-lora.safetensors", None), ("other.safetensors", True)]


@pytest.mark.slow
def test_a_lora_beside_renders_as_it_does_alone(client, store, settings, demo_paths):
    """Side by side, each file's picture at a strength is the picture it renders on its own (same seed)."""
    from tests.test_trainer_renders import finished_job

    job = finished_job(store, settings.root, demo_paths)
    other = library_lora(settings, demo_paths, "other.safetensors")
    body = {**REQUEST, "prompt": "tok, a red circle"}  # the same text for both (their trigger words differ)
    both = client.post(f"/api/jobs/{job.id}/renders", json={**body, "beside": [other.name]}).get_json()["render"]
    alone = client.post(url_of(other), json=body).get_json()["render"]
    Worker(settings, poll_s=0.1, unload_caption=False).run_once()  # the render process takes the next one too
    assert store.get(both["id"]).status == store.get(alone["id"]).status == "completed"
    shown = next(r for r in client.get(f"/api/jobs/{job.id}/renders").get_json()["renders"] if r["id"] == both["id"])
    assert [(image["lora"], image["strength"]) for image in shown["images"]] == [(None, 0), (0, 1), (1, 1)]
    own = client.get(url_of(other)).get_json()["renders"][0]
    assert own["id"] == alone["id"]
    assert client.get(shown["images"][2]["url"]).data == client.get(own["images"][1]["url"]).data
    assert client.get(shown["images"][1]["url"]).data != client.get(shown["images"][2]["url"]).data
    # the file beside it deleted before it renders: it fails saying so
    again = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "seed": 9, "beside": [other.name]})
    other.unlink()
    failed = Worker(settings, poll_s=0.1, unload_caption=False).run_once()
    assert failed.id == again.get_json()["render"]["id"] and failed.status == "failed"
    assert "other.safetensors, which this render was to show beside it, was deleted" in failed.error
