"""Try the LoRA: renders of a training job's LoRA at several strengths, through the API and the worker,
on the real tiny Z-Image pipeline; bad requests, a LoRA for another model, crashes and orphans."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import trainer
from studio.jobs import JobStore
from studio.processes import process_token
from studio.settings import load_settings
from studio.workspace import Workspace
from tests.test_trainer_worker import TINY_CONFIG
from trainer import renders
from trainer.engine import model as zmodel
from trainer.engine.checkpoints import write_lora_file
from trainer.engine.errors import TrainingError
from trainer.engine.try_lora import TryRequest, render
from trainer.recovery import reconcile
from trainer.step_dirs import latest_checkpoint_step
from trainer.worker import Worker

REQUEST = {"prompt": "[trigger], a red circle", "strengths": [0, 1], "seed": 7, "width": 80, "height": 64,
           "steps": 2}


def make_lora(paths, path: Path, rank: int = 4) -> Path:
    """A LoRA for the tiny transformer whose up weights are not zero, so it changes the image."""
    transformer = zmodel.load_transformer(paths, torch.device("cpu"), torch.float32)
    zmodel.add_lora(transformer, rank, rank, seed=1)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if ".lora_B." in name:
                param.copy_(torch.randn_like(param) * 0.5)
    write_lora_file(path, zmodel.lora_state_dict(transformer, rank, rank, "bf16"), {"rank": str(rank)})
    return path


def finished_job(store: JobStore, root: Path, paths, status: str = "completed", checkpoint: int | None = 3):
    """A training job row with its LoRA file (when completed) and one checkpoint's LoRA on disk."""
    job = store.create("train", name="tiny", recipe="zimage-turbo", config=TINY_CONFIG, dataset="tiny-set", total=6)[0]
    job_dir = Workspace(root).jobs / job.id
    lora = None
    if checkpoint is not None:
        make_lora(paths, job_dir / "checkpoints" / f"step_{checkpoint:06d}" / "lora.safetensors")
    if status == "completed":
        lora = make_lora(paths, job_dir / "lora" / "tiny-lora.safetensors")
    store.progress(job.id, {"done": 6 if status == "completed" else 3})
    return store.finish(job.id, status, lora_path=str(lora) if lora else None)


class FakeSession:
    """Stands in for the engine's RenderSession in the child's bookkeeping tests: it raises `raised`, or
    writes one image per strength."""

    def __init__(self, raised: BaseException | None = None):
        self.raised, self.calls, self.closed, self.log = raised, [], False, print

    def fits(self, request) -> bool:
        return request.quantize_base == "none"

    def render(self, request, files, out_dir, on_progress, labels, stack=()):
        self.calls.append(request.prompt)
        if self.raised is not None:
            raise self.raised
        on_progress({"phase": "rendering", "done": 1, "total": 1})
        return [{"strength": s, "lora": 0, "file": f"{i}.png", "seconds": 0.0} for i, s in enumerate(request.strengths)]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def settings(demo_root):
    return load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
                          "RENDER_KEEP_WARM_S": "0", "ALLOW_PRIVATE_URLS": "1"})  # LoRAs from a stand-in web


@pytest.fixture
def app(settings):
    return trainer.create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def store(app):
    return app.extensions["job_store"]


# -- the engine ---------------------------------------------------------------------------------
def test_render_at_several_strengths(demo_paths, tmp_path):
    lora = make_lora(demo_paths, tmp_path / "lora.safetensors")
    request = TryRequest(prompt="tok, a red circle", strengths=(0.0, 1.0, -1.0), seed=3, width=64, height=48,
                         steps=2, guidance_scale=0.0)
    reports = []
    images = render(request, [lora], demo_paths, tmp_path / "out", device="cpu", on_progress=reports.append,
                    log=lambda _line: None)
    assert [image["strength"] for image in images] == [0.0, 1.0, -1.0]
    pixels = [Image.open(tmp_path / "out" / image["file"]).convert("RGB") for image in images]
    assert all(p.size == (64, 48) for p in pixels)
    assert pixels[0].tobytes() != pixels[1].tobytes() != pixels[2].tobytes()  # the LoRA changes the image
    assert reports[-1]["done"] == 3 and [r["message"] for r in reports if r.get("message")][-1].endswith("LoRA at -1")
    # same seed, same strength: the same image (the hooks leave the transformer as it was)
    again = render(TryRequest(**{**request.__dict__, "strengths": (0.0,)}), [lora], demo_paths, tmp_path / "again",
                   device="cpu", log=lambda _line: None)
    assert Image.open(tmp_path / "again" / again[0]["file"]).convert("RGB").tobytes() == pixels[0].tobytes()


def test_several_lora_files_render_the_base_once(demo_paths, tmp_path):
    first = make_lora(demo_paths, tmp_path / "step_000100" / "lora.safetensors")
    second = make_lora(demo_paths, tmp_path / "step_000200" / "lora.safetensors")
    request = TryRequest(prompt="tok", strengths=(0.0, 1.0), seed=3, width=64, height=64, steps=2, guidance_scale=0)
    lines = []
    images = render(request, [first, second], demo_paths, tmp_path / "out", device="cpu", log=lines.append,
                    labels=["checkpoint at step 100", "final LoRA (step 200)"])
    assert [(image["lora"], image["strength"]) for image in images] == [(None, 0.0), (0, 1.0), (1, 1.0)]
    pixels = [Image.open(tmp_path / "out" / image["file"]).tobytes() for image in images]
    assert len(set(pixels)) == 3
    assert any("LoRA at 1, final LoRA (step 200)" in line for line in lines)


def test_rendering_needs_no_training_adapter(demo_paths, tmp_path):
    import dataclasses

    paths = dataclasses.replace(demo_paths, training_adapter=tmp_path / "deleted.safetensors")
    request = TryRequest(prompt="tok", strengths=(1.0,), seed=1, width=64, height=64, steps=1, guidance_scale=0)
    images = render(request, [make_lora(demo_paths, tmp_path / "l.safetensors")], paths, tmp_path / "out",
                    device="cpu", log=lambda _line: None)
    assert [image["strength"] for image in images] == [1.0]


def test_out_of_memory_renders_again_with_a_tiled_decoder(demo_paths, tmp_path, monkeypatch):
    from trainer.engine.sampling import Sampler

    real, calls = Sampler.render_image, []

    def short_of_memory(self, *args):
        calls.append(getattr(self._vae, "use_tiling", False))
        if len(calls) == 1:
            self._pipeline(args[0])  # the decoder is loaded by then
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return real(self, *args)

    monkeypatch.setattr(Sampler, "render_image", short_of_memory)
    lines = []
    request = TryRequest(prompt="x", strengths=(0.0, 1.0), seed=1, width=64, height=64, steps=1, guidance_scale=0)
    images = render(request, [make_lora(demo_paths, tmp_path / "l.safetensors")], demo_paths, tmp_path / "out",
                    device="cpu", log=lines.append)
    assert len(images) == 2 and calls == [False, True, True]
    assert any("decodes in tiles" in line for line in lines)


def test_a_lora_for_another_model_is_refused_before_rendering(demo_paths, tmp_path):
    bad = tmp_path / "other.safetensors"
    write_lora_file(bad, {"diffusion_model.layers.0.attention.to_q.lora_A.weight": torch.zeros(4, 7),
                          "diffusion_model.layers.0.attention.to_q.lora_B.weight": torch.zeros(7, 4)}, {})
    request = TryRequest(prompt="x", strengths=(0.0, 1.0), seed=1, width=64, height=64, steps=1, guidance_scale=0)
    with pytest.raises(TrainingError, match="does not fit this transformer"):
        render(request, [bad], demo_paths, tmp_path / "out", device="cpu", log=lambda _line: None)
    assert not list((tmp_path / "out").glob("*.png"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TrainingError, match="The LoRA file .* cannot be read"):
        render(request, [tmp_path / "junk.safetensors"], demo_paths, tmp_path / "out2", device="cpu")


# -- the API -------------------------------------------------------------------------------------
def test_render_requests_are_checked(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    url = f"/api/jobs/{job.id}/renders"
    cases = [({}, "Type a prompt"), ({"prompt": "  "}, "Type a prompt"), ({"prompt": 5}, "Type a prompt"),
             ({**REQUEST, "strengths": []}, "one or more numbers"), ({**REQUEST, "strengths": [0, "1"]}, "number"),
             ({**REQUEST, "strengths": [0, 3]}, "between -2 and 2"),
             ({**REQUEST, "strengths": [0, .1, .2, .3, .4, .5, .6]}, "At most 6"),
             ({**REQUEST, "width": 100}, "multiple of 16"), ({**REQUEST, "height": 4096}, "between 64 and 2048"),
             ({**REQUEST, "seed": -1}, "seed"), ({**REQUEST, "steps": 1.5}, "whole number"),
             ({**REQUEST, "lora": 5}, "no checkpoint at step 5"), ({**REQUEST, "lora": "best"}, "'lora' must be"),
             ({**REQUEST, "prompt": "x" * 2001}, "longer than 2000"),
             ({**REQUEST, "prompt": "[trigger] a cat --w 100"}, "multiple of 16"),  # its options, checked alike
             ({**REQUEST, "prompt": "--w 96"}, "before its options")]
    for body, words in cases:
        response = client.post(url, json=body)
        assert response.status_code == 422, body
        assert words in response.get_json()["error"], (body, response.get_json())
    assert client.post("/api/jobs/nope/renders", json=REQUEST).status_code == 404
    assert client.get(url).get_json()["renders"] == []


def test_a_render_is_queued_listed_and_deleted(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    url = f"/api/jobs/{job.id}/renders"
    response = client.post(url, json=REQUEST)
    assert response.status_code == 202
    queued = response.get_json()["render"]
    assert queued["status"] == "queued" and queued["prompt"] == "tok, a red circle"  # [trigger] filled in
    assert queued["loras"] == [{"file": "lora/tiny-lora.safetensors", "step": 6, "final": True,
                                "label": "final LoRA (step 6)"}]
    assert queued["message"] == "Waiting for the worker."
    # a double click gives the first render back; another seed is another render
    assert client.post(url, json=REQUEST).get_json()["render"]["id"] == queued["id"]
    other = client.post(url, json={**REQUEST, "seed": 8, "lora": 3}).get_json()["render"]
    assert other["loras"] == [{"file": "checkpoints/step_000003/lora.safetensors", "step": 3, "final": False,
                               "label": "checkpoint at step 3"}]
    listing = client.get(url).get_json()
    assert [r["id"] for r in listing["renders"]] == [other["id"], queued["id"]]
    assert [c["value"] for c in listing["loras"]] == ["final", 3, "all"]
    assert listing["defaults"]["trigger_word"] == "tok" and listing["defaults"]["prompt"] == "tok, a red circle"
    # whether a render would start at once: the worker keeps the models loaded a while after one
    assert listing["warm"] is False
    store.worker_beat(os.getpid(), "warm")
    assert client.get(url).get_json()["warm"] is True
    # a prompt pasted with its preview options (kohya's --w --h --d --s): the text alone, its options in the fields
    pasted = client.post(url, json={**REQUEST, "prompt": "[trigger], a blue square --w 96 --h 64 --d 9 --s 3 --l 2"})
    assert pasted.status_code == 202, pasted.get_json()
    got = pasted.get_json()["render"]
    assert (got["prompt"], got["width"], got["height"], got["seed"], got["steps"], got["guidance_scale"]) == (
        "tok, a blue square", 96, 64, 9, 3, 2.0)
    # no seed: the server draws one
    assert isinstance(client.post(url, json={"prompt": "tok"}).get_json()["render"]["seed"], int)
    # a running render is cancelled (its worker ends it, tests/test_try_cancel.py); a queued one goes at once
    store.start(other["id"], "someone")
    cancelled = client.delete(f"{url}/{other['id']}")
    assert cancelled.status_code == 202 and cancelled.get_json()["cancelling"] is True
    assert client.delete(f"{url}/{queued['id']}").get_json() == {"deleted": True, "id": queued["id"]}
    assert client.delete(f"{url}/{queued['id']}").status_code == 404
    assert client.delete(f"{url}/../../x").status_code in (400, 404)


def test_the_queue_of_renders_is_bounded_and_says_what_it_waits_for(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    busy = store.create("train", name="Big run", recipe="zimage-turbo", config=TINY_CONFIG, total=100)[0]
    store.start(busy.id, process_token())  # this process: a live owner
    store.progress(busy.id, {"eta_s": 600})
    url = f"/api/jobs/{job.id}/renders"
    first = client.post(url, json=REQUEST).get_json()["render"]
    assert first["message"].startswith("Waits for the training job “Big run” to finish (about 10 min left)")
    for seed in range(100, 99 + renders.MAX_WAITING):
        assert client.post(url, json={**REQUEST, "seed": seed}).status_code == 202
    response = client.post(url, json={**REQUEST, "seed": 99_999})
    assert response.status_code == 429 and "waiting already" in response.get_json()["error"]
    # the list says what they wait for now: the training job's time left, then the worker once it is done
    store.progress(busy.id, {"eta_s": 120})
    assert client.get(url).get_json()["renders"][0]["message"].startswith(
        "Waits for the training job “Big run” to finish (about 2 min left)")
    store.finish(busy.id, "completed")
    assert {r["message"] for r in client.get(url).get_json()["renders"]} == {"Waiting for the worker."}


def test_every_checkpoint_side_by_side(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)  # a checkpoint at step 3, the final LoRA at step 6
    job_dir = Workspace(settings.root).jobs / job.id
    make_lora(demo_paths, job_dir / "checkpoints" / "step_000006" / "lora.safetensors")  # the final step's own
    url = f"/api/jobs/{job.id}/renders"
    # the checkpoint at the final step is the final LoRA: offered once
    assert [c["value"] for c in client.get(url).get_json()["loras"]] == ["final", 3, "all"]
    made = client.post(url, json={**REQUEST, "lora": "all", "strengths": [0, 0.5, 1]}).get_json()["render"]
    # training order; the final LoRA stands for the checkpoint at its step
    assert [(lora["step"], lora["file"]) for lora in made["loras"]] == [
        (3, "checkpoints/step_000003/lora.safetensors"), (6, "lora/tiny-lora.safetensors")]
    assert made["total"] == 1 + 2 * 2  # the base once, two strengths per file
    six = client.post(url, json={**REQUEST, "lora": "all", "strengths": [0, .2, .4, .6, .8, 1]})
    assert six.status_code == 202 and six.get_json()["render"]["total"] == 11  # 1 + 2 * 5
    for step in (9, 12, 15, 18, 21):
        make_lora(demo_paths, job_dir / "checkpoints" / f"step_{step:06d}" / "lora.safetensors")
    response = client.post(url, json={**REQUEST, "lora": "all", "strengths": [0, .2, .4, .6, .8, 1], "seed": 2})
    assert response.status_code == 422
    assert response.get_json()["error"].startswith("That is 36 images; at most 24 per render")
    only = finished_job(store, settings.root, demo_paths, status="stopped", checkpoint=3)
    assert "all" not in [c["value"] for c in client.get(f"/api/jobs/{only.id}/renders").get_json()["loras"]]
    response = client.post(f"/api/jobs/{only.id}/renders", json={**REQUEST, "lora": "all"})
    assert response.status_code == 422 and "only one LoRA file" in response.get_json()["error"]


def test_a_job_without_a_lora_yet_says_when_it_has_one(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths, status="stopped", checkpoint=None)
    response = client.post(f"/api/jobs/{job.id}/renders", json=REQUEST)
    assert response.status_code == 422 and "no LoRA to try yet" in response.get_json()["error"]
    stopped = finished_job(store, settings.root, demo_paths, status="stopped", checkpoint=3)
    made = client.post(f"/api/jobs/{stopped.id}/renders", json=REQUEST).get_json()["render"]
    assert [lora["step"] for lora in made["loras"]] == [3]  # its newest checkpoint
    assert [c["value"] for c in client.get(f"/api/jobs/{stopped.id}/renders").get_json()["loras"]] == [3]


def test_deleting_the_training_job_takes_its_renders(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    made = client.post(f"/api/jobs/{job.id}/renders", json=REQUEST).get_json()["render"]
    assert client.delete(f"/api/jobs/{job.id}").get_json()["deleted"] is True
    assert store.find(made["id"]) is None


# -- the worker ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_worker_renders_before_queued_training_and_serves_the_images(client, store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    waiting = store.create("train", name="later", recipe="zimage-turbo", config=TINY_CONFIG, dataset="tiny-set",
                           total=6)[0]
    made = client.post(f"/api/jobs/{job.id}/renders", json=REQUEST).get_json()["render"]
    worker = Worker(settings, poll_s=0.1, unload_caption=False)
    done = worker.run_once()
    assert done.id == made["id"] and done.status == "completed", done.error
    assert store.get(waiting.id).status == "queued"
    shown = client.get(f"/api/jobs/{job.id}/renders").get_json()["renders"][0]
    assert shown["status"] == "completed" and shown["message"].startswith("Rendered 2 images in")
    assert [image["strength"] for image in shown["images"]] == [0, 1]
    for image in shown["images"]:
        response = client.get(image["url"])
        assert response.status_code == 200 and response.mimetype == "image/png"
        assert Image.open(__import__("io").BytesIO(response.data)).size == (80, 64)
    log = (Workspace(settings.root).jobs / job.id / "renders" / made["id"] / "log.txt").read_text()
    assert "Rendering 'tok, a red circle' with lora/tiny-lora.safetensors at strengths 0, 1, seed 7" in log
    # deleting it takes its images and their small previews
    assert client.get(shown["images"][0]["url"] + "?thumb=1").status_code == 200
    job_dir = Workspace(settings.root).jobs / job.id
    assert (job_dir / ".thumbs" / "renders" / made["id"]).is_dir()
    assert client.delete(f"/api/jobs/{job.id}/renders/{made['id']}").status_code == 200
    assert not (job_dir / "renders" / made["id"]).exists()
    assert not (job_dir / ".thumbs" / "renders" / made["id"]).exists()


def test_a_render_whose_process_dies_fails_with_the_cause(store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    config = renders.parse(REQUEST, job, Workspace(settings.root).jobs / job.id)
    made = store.create(renders.KIND, name="x", parent_id=job.id, config=config, total=2)[0]
    crash = [sys.executable, "-c", "import os; print('rendering...', flush=True); os._exit(9)"]
    worker = Worker(settings, poll_s=0.1, unload_caption=False, render_command=lambda _id: crash)
    done = worker.run_once()
    assert done.id == made.id and done.status == "failed"
    assert done.error.startswith("The render process exited with code 9.") and "rendering..." in done.error


def test_a_render_of_a_deleted_job_is_dropped(store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    config = renders.parse(REQUEST, job, Workspace(settings.root).jobs / job.id)
    made = store.create(renders.KIND, name="x", parent_id=job.id, config=config, total=2)[0]
    store.delete(job.id)  # as if deleted while the render waited
    worker = Worker(settings, poll_s=0.1, unload_caption=False)
    worker.run_once()
    assert store.find(made.id) is None


def test_a_render_whose_worker_died_renders_again_then_gives_up(store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    made = store.create(renders.KIND, name="x", parent_id=job.id, config={}, total=2)[0]
    dead = "999999999:1"  # a process token whose process is gone
    for attempt in (1, 2):
        assert store.start(made.id, dead) is not None
        reconcile(store, Workspace(settings.root).jobs)
        now = store.get(made.id)
        if attempt == 1:
            assert now.status == "queued" and "renders again" in now.message
    assert now.status == "failed" and "stopped 2 times" in now.error
    assert now.finished_at is not None


@pytest.mark.parametrize("raised, said", [
    (TrainingError("The LoRA file lora/x.safetensors cannot be read (bad header)."), "cannot be read (bad header)"),
    (OSError(28, "No space left on device"), "disk"),
    (torch.OutOfMemoryError("CUDA out of memory"), "ran out of GPU memory. Try a smaller size"),
    (ValueError("boom"), "unexpected error (ValueError: boom)"),
])
def test_a_failed_render_says_why_and_keeps_its_log(store, settings, demo_paths, raised, said):
    from trainer.render_job import execute

    job = finished_job(store, settings.root, demo_paths)
    config = renders.parse(REQUEST, job, Workspace(settings.root).jobs / job.id)
    made = store.create(renders.KIND, name="x", parent_id=job.id, config=config, total=2)[0]
    store.start(made.id, "me")

    code = execute(settings, made.id, session=FakeSession(raised))
    ended = store.get(made.id)
    assert code in (1, 3) and ended.status == "failed" and said in ended.error, ended.error
    log = (renders.folder(Workspace(settings.root), ended) / "log.txt").read_text()
    assert "Rendering 'tok, a red circle'" in log and f"Failed: {ended.error}" in log


def test_a_stuck_render_is_ended_and_the_queue_goes_on(store, settings, demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    config = renders.parse(REQUEST, job, Workspace(settings.root).jobs / job.id)
    made = store.create(renders.KIND, name="x", parent_id=job.id, config=config, total=2)[0]
    waiting = store.create("train", name="next", recipe="zimage-turbo", config=TINY_CONFIG, total=6)[0]
    hang = [sys.executable, "-c", "import time; print('stuck in a GPU call', flush=True); time.sleep(600)"]
    worker = Worker(settings, poll_s=0.1, unload_caption=False, render_command=lambda _id: hang,
                    render_timeout_s=2.0)
    done = worker.run_once()
    assert done.id == made.id and done.status == "failed"
    assert done.error.startswith("The render took longer than 2 s and was ended")
    assert "stuck in a GPU call" in done.error
    assert store.get(waiting.id).status == "queued"  # the next run_once takes it


def test_a_render_never_reads_outside_its_job_folder(store, settings, demo_paths):
    from trainer.render_job import execute

    job = finished_job(store, settings.root, demo_paths)
    config = renders.parse(REQUEST, job, Workspace(settings.root).jobs / job.id)
    config["loras"] = [{"file": "../../../studio.db", "step": 1, "final": False, "label": "x"}]
    made = store.create(renders.KIND, name="x", parent_id=job.id, config=config, total=2)[0]
    store.start(made.id, "me")
    session = FakeSession()
    assert execute(settings, made.id, session=session) == 1
    ended = store.get(made.id)
    assert ended.status == "failed" and "points outside its folder" in ended.error and session.calls == []
    assert session.closed


def test_a_pod_stop_during_a_render_queues_it_again(store, settings, demo_paths, monkeypatch):
    import threading

    from trainer import render_runner

    monkeypatch.setattr(render_runner, "SHUTDOWN_GRACE_S", 0.5)
    job = finished_job(store, settings.root, demo_paths)
    config = renders.parse(REQUEST, job, Workspace(settings.root).jobs / job.id)
    made = store.create(renders.KIND, name="x", parent_id=job.id, config=config, total=2)[0]
    slow = [sys.executable, "-c", "import time; time.sleep(600)"]
    worker = Worker(settings, poll_s=0.1, unload_caption=False, render_command=lambda _id: slow)
    threading.Timer(1.0, worker.request_shutdown).start()  # SIGTERM from supervisord, as at a pod stop
    done = worker.run_once()
    assert done.id == made.id and done.status == "queued"
    assert done.message.startswith("The worker shut down while rendering; it renders again")


def test_pausing_a_training_run_lets_the_renders_go_first_then_it_goes_on(client, store, settings, demo_paths):
    """The Try panel's "Pause and render now": the running job saves a checkpoint and stops, the waiting
    render runs, then the job continues from that checkpoint by itself (the fake engine of the worker
    tests stands in for training)."""
    import threading

    from tests.test_trainer_worker import _job, _wait, _worker

    tried = finished_job(store, settings.root, demo_paths)
    busy = _job(store, steps=60, delay=0.05, save_every=100)
    worker = _worker(settings, unload_caption=False,
                     render_command=lambda _id: [sys.executable, "-c", "print('rendered', flush=True)"])
    assert client.post(f"/api/jobs/{busy.id}/pause").status_code == 409  # queued: nothing to pause
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait(lambda: store.get(busy.id).step >= 3, what="steps")
    render = client.post(f"/api/jobs/{tried.id}/renders", json=REQUEST).get_json()["render"]
    listing = client.get(f"/api/jobs/{tried.id}/renders").get_json()
    assert listing["training"] == {"id": busy.id, "name": "fake job", "stopping": False}
    response = client.post(f"/api/jobs/{busy.id}/pause")
    assert response.status_code == 202 and response.get_json()["job"]["stopping"] is True
    assert client.post(f"/api/jobs/{busy.id}/pause").status_code == 409  # already stopping
    thread.join(30)
    paused = store.get(busy.id)
    at = latest_checkpoint_step(Workspace(settings.root).jobs / busy.id)
    assert paused.status == "queued" and at is not None and at >= 3
    assert paused.message.startswith(f"Paused at step {at} for the renders; it continues from step {at}")
    assert renders.PAUSED not in paused.details
    assert worker.run_once().id == render["id"]  # the render first
    with store.write() as conn:  # make the rest short
        conn.execute("UPDATE jobs SET config = json_set(config, '$.delay', 0.0) WHERE id = ?", (busy.id,))
    assert worker.run_once().status == "completed"
    assert f"fake: starting at step {at}" in (Workspace(settings.root).jobs / busy.id / "log.txt").read_text()


def test_a_pause_left_by_a_dead_worker_does_not_pause_the_next_run(store, settings):
    import threading

    from tests.test_trainer_worker import _job, _wait, _worker

    busy = _job(store, steps=60, delay=0.05, save_every=100)
    store.progress(busy.id, {renders.PAUSED: True})  # asked for in a run whose worker then died
    worker = _worker(settings, unload_caption=False)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait(lambda: store.get(busy.id).step >= 3, what="steps")
    store.request_stop(busy.id)  # an ordinary stop
    thread.join(30)
    assert store.get(busy.id).status == "stopped"


def test_a_pause_whose_worker_died_while_it_saved_still_goes_on_after_the_renders(store, settings):
    from tests.test_trainer_worker import _job

    busy = _job(store, steps=60)
    store.start(busy.id, "999999999:1")  # a worker that died while the pause saved its checkpoint
    store.progress(busy.id, {renders.PAUSED: True})
    store.request_stop(busy.id)
    reconcile(store, Workspace(settings.root).jobs)
    now = store.get(busy.id)
    assert now.status == "queued" and renders.PAUSED not in now.details
    assert now.message.startswith("Paused for the renders, but the worker stopped while it saved; queued again")
    # an ordinary stop whose worker died stays stopped
    other = _job(store, steps=60)
    store.start(other.id, "999999999:1")
    store.request_stop(other.id)
    reconcile(store, Workspace(settings.root).jobs)
    assert store.get(other.id).status == "stopped"
