"""Try the LoRA keeps its models loaded: one render process renders every queued render it can, and
waits a while for the next one while nothing else needs the GPU. The engine's session on the real tiny
pipeline, its GPU memory decisions with stand-ins for the GPU, the child's queue and the worker's side."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from studio.jobs import JobStore
from studio.processes import process_token
from studio.settings import load_settings
from studio.workspace import Workspace
from tests.test_trainer_renders import REQUEST, FakeSession, finished_job, make_lora
from tests.test_trainer_worker import TINY_CONFIG, _wait
from trainer import render_job, renders
from trainer.engine import try_lora
from trainer.engine.try_lora import RenderSession, TryRequest, render
from trainer.worker import Worker


def _settings(root, keep_warm_s: float = 0.0):
    return load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9",
                          "RENDER_KEEP_WARM_S": str(keep_warm_s)})


@pytest.fixture
def store(demo_root):
    return JobStore(Workspace(demo_root).ensure().db_path)


def _queue(store, settings, job, **changes):
    config = renders.parse({**REQUEST, **changes}, job, Workspace(settings.root).jobs / job.id)
    return store.create(renders.KIND, name=config["prompt"][:80], parent_id=job.id, config=config, total=2)[0]


# -- the engine -------------------------------------------------------------------------------
def test_a_session_loads_the_models_once_and_renders_what_a_fresh_load_renders(demo_paths, tmp_path):
    lora = make_lora(demo_paths, tmp_path / "lora.safetensors")
    first = TryRequest(prompt="tok, a red circle", strengths=(0.0, 1.0), seed=3, width=64, height=48, steps=2,
                       guidance_scale=0.0)
    second = TryRequest(**{**first.__dict__, "prompt": "tok, a green square", "seed": 4, "width": 48})
    session = RenderSession(demo_paths, "cpu", log=lambda _line: None)
    session.render(first, [lora], tmp_path / "a")
    session.render(second, [lora], tmp_path / "b")
    session.render(first, [lora], tmp_path / "c")  # a prompt seen before needs no encoder at all
    assert session.loads == {"text_encoder": 1, "transformer": 1}
    fresh = tmp_path / "fresh"
    render(second, [lora], demo_paths, fresh, device="cpu", log=lambda _line: None)
    for name in ("0.png", "1.png"):
        warm = Image.open(tmp_path / "b" / name).tobytes()
        assert warm == Image.open(fresh / name).tobytes()
    assert Image.open(tmp_path / "c" / "1.png").tobytes() == Image.open(tmp_path / "a" / "1.png").tobytes()
    # other memory settings are another transformer: it is loaded again (the prompt's embedding is kept)
    assert not session.fits(TryRequest(**{**first.__dict__, "quantize_base": "float8"}))
    session.render(TryRequest(**{**first.__dict__, "quantize_base": "float8"}), [lora], tmp_path / "d")
    assert session.loads == {"text_encoder": 1, "transformer": 2}
    session.close()
    assert session.transformer is None and session.encoder is None


def test_a_picture_tells_its_denoising_steps_and_a_cancel_ends_it_between_two(demo_paths, tmp_path):
    """A render told only "rendering…" for the whole of a picture (a minute at 2048 px), and a cancel waited for it to
    end: each denoising step is reported, and an exception the report raises (a cancel) ends the picture there."""
    lora = make_lora(demo_paths, tmp_path / "lora.safetensors")
    request = TryRequest(prompt="tok, a red circle", strengths=(0.0, 1.0), seed=3, width=48, height=48, steps=3,
                         guidance_scale=0.0)
    session = RenderSession(demo_paths, "cpu", log=lambda _line: None)
    reports = []
    session.render(request, [lora], tmp_path / "a", reports.append)
    steps = [(r["done"], r["picture_step"]) for r in reports if r.get("picture_steps") == 3]
    assert steps == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]

    class Cancelled(Exception):
        pass

    def cancel_at_the_second_step(values):
        if values.get("picture_step") == 2:
            raise Cancelled
    with pytest.raises(Cancelled):
        session.render(request, [lora], tmp_path / "b", cancel_at_the_second_step)
    assert not (tmp_path / "b" / "0.png").exists()
    session.close()


class _Module(torch.nn.Linear):
    """A model stand-in for the GPU decisions: 1 MB of weights that records where it is sent."""

    def __init__(self, moves: list, name: str):
        super().__init__(512, 512, bias=False)
        self.moves, self.name = moves, name

    def to(self, device):
        self.moves.append((self.name, str(device)))
        return self


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A session that believes it runs on a GPU, its models replaced by stand-ins (none can load here)."""
    moves, state = [], {"gpu_free": 10 * 2**30, "host_free": 64 * 2**30}
    monkeypatch.setattr(try_lora.zmodel, "check_model_files", lambda *_a, **_k: None)
    monkeypatch.setattr(try_lora.zmodel, "load_text_encoder", lambda *_a: (object(), _Module(moves, "encoder")))
    monkeypatch.setattr(try_lora.zmodel, "encode_prompts", lambda _t, _e, texts: [torch.zeros(2, 4) for _ in texts])
    monkeypatch.setattr(try_lora.zmodel, "load_transformer", lambda *_a: _Module(moves, "transformer"))
    monkeypatch.setattr(try_lora, "quantize", lambda *_a, **_k: (False, {}))
    monkeypatch.setattr(try_lora, "free_memory", lambda _dev: None)
    monkeypatch.setattr(try_lora, "host_available", lambda: state["host_free"])
    monkeypatch.setattr(try_lora, "Sampler", lambda *_a: SimpleNamespace())
    session = RenderSession(object(), "cpu", log=lambda _line: None, gpu_free=lambda _dev: state["gpu_free"])
    session.dev = torch.device("cuda")
    request = TryRequest(prompt="a", strengths=(), seed=1, width=64, height=64, steps=1, guidance_scale=0.0)
    for prompt in ("a", "b"):
        session.render(TryRequest(**{**request.__dict__, "prompt": prompt}), [], tmp_path)
    return session, moves, state


def test_on_a_gpu_the_encoder_waits_in_host_memory_and_encodes_beside_the_transformer(gpu):
    session, moves, _state = gpu
    assert session.loads == {"text_encoder": 1, "transformer": 1}
    assert moves == [("encoder", "cpu"), ("encoder", "cuda"), ("encoder", "cpu")]


@pytest.mark.parametrize("gpu_free, host_free, loads", [
    (2**30, 64 * 2**30, {"text_encoder": 1, "transformer": 3}),  # no room beside it: the transformer goes
    (10 * 2**30, 2**30, {"text_encoder": 2, "transformer": 2}),  # no host memory to keep the encoder in
])
def test_without_room_the_session_loads_again_instead_of_running_out_of_memory(gpu, tmp_path, gpu_free, host_free,
                                                                              loads):
    session, _moves, state = gpu
    state.update(gpu_free=gpu_free, host_free=host_free)
    for prompt in ("c", "d"):
        session.render(TryRequest(prompt=prompt, strengths=(), seed=1, width=64, height=64, steps=1,
                                  guidance_scale=0.0), [], tmp_path)
    assert session.loads == loads


# -- the render process -----------------------------------------------------------------------
def test_one_process_renders_every_queued_render_with_the_models_loaded_once(store, demo_root, demo_paths):
    settings = _settings(demo_root)
    job = finished_job(store, settings.root, demo_paths)
    first, second = _queue(store, settings, job), _queue(store, settings, job, prompt="[trigger], a green square")
    owner = process_token()
    store.start(first.id, owner)  # claimed by the worker, as run_once does
    session = RenderSession(demo_paths, "cpu")
    assert render_job.execute(settings, first.id, session=session) == 0
    for made in (first, second):
        done = store.get(made.id)
        assert done.status == "completed" and done.owner == owner, done.error
        assert [image["file"] for image in done.result["images"]] == ["0.png", "1.png"]
    assert session.loads == {"text_encoder": 1, "transformer": 1} and session.transformer is None  # closed
    log = (renders.folder(Workspace(settings.root), store.get(second.id)) / "log.txt").read_text()
    assert "Rendering 'tok, a green square'" in log and "Rendered LoRA at 1" in log


def test_the_process_waits_for_a_next_render_only_while_nothing_else_needs_the_gpu(store, demo_root, demo_paths):
    settings = _settings(demo_root)
    job = finished_job(store, settings.root, demo_paths)
    session, owner = FakeSession(), "4242:1"
    # a render queued while it waits is taken at once, by the same worker
    later = threading.Timer(0.3, lambda: _queue(store, settings, job))
    later.start()
    taken = render_job.next_render(store, owner, session, 60.0)
    assert taken is not None and taken.status == "running" and taken.owner == owner
    assert taken.message.startswith("Starting (the model is loaded already)")
    store.finish(taken.id, "completed")
    # a render for other memory settings is left to a fresh process
    other = _queue(store, settings, job, prompt="x")
    store.update(other.id, config={**other.config, "quantize_base": "float8"})
    assert render_job.next_render(store, owner, session, 60.0) is None
    assert store.get(other.id).status == "queued"
    store.update(other.id, config={"prompt": "no strengths"})  # unreadable: left to a fresh process, which fails it
    assert render_job.next_render(store, owner, session, 60.0) is None
    store.delete(other.id)
    # training or captioning waiting: no waiting at all; nothing queued: it waits, then ends
    naps, clock = [], iter(range(1000))  # the clock ticks a second at each look at the queue
    assert render_job.next_render(store, owner, session, 5.0, clock=lambda: next(clock), sleep=naps.append) is None
    assert len(naps) == 4
    for kind in ("train", "caption"):
        waiting = store.create(kind, name="w", config=TINY_CONFIG)[0]
        naps.clear()
        assert render_job.next_render(store, owner, session, 60.0, sleep=naps.append) is None and naps == []
        store.delete(waiting.id)


def test_a_failed_render_ends_the_session(store, demo_root, demo_paths):
    settings = _settings(demo_root, keep_warm_s=60)
    job = finished_job(store, settings.root, demo_paths)
    first, second = _queue(store, settings, job), _queue(store, settings, job, prompt="again")
    store.start(first.id, "4242:1")
    session = FakeSession(torch.OutOfMemoryError("CUDA out of memory"))
    assert render_job.execute(settings, first.id, session=session) == 1
    assert store.get(first.id).status == "failed" and store.get(second.id).status == "queued"
    assert session.closed  # the next render starts in a fresh process, with all of its memory


# -- the worker -------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_worker_keeps_the_models_warm_for_the_next_render_then_trains(store, demo_root, demo_paths):
    settings = _settings(demo_root, keep_warm_s=120)
    job = finished_job(store, settings.root, demo_paths)
    first = _queue(store, settings, job)
    worker = Worker(settings, poll_s=0.1, heartbeat_s=0.2, unload_caption=False)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait(lambda: store.get(first.id).status == "completed", timeout=120, what="the first render")
    _wait(lambda: [w["state"] for w in store.workers()] == ["warm"], what="the worker to say the models are warm")
    second = _queue(store, settings, job, prompt="[trigger], a green square")
    _wait(lambda: store.get(second.id).status == "completed", timeout=60, what="the second render")
    log = (renders.folder(Workspace(settings.root), store.get(second.id)) / "log.txt").read_text()
    assert "starting render attempt" not in log  # the same process, with its models loaded
    assert thread.is_alive()
    store.create("train", name="next", recipe="zimage-turbo", config=TINY_CONFIG, dataset="tiny-set", total=6)
    thread.join(30)  # training waits: the render process ends at once
    assert not thread.is_alive()
    assert store.get(second.id).status == "completed"


def test_a_render_process_that_dies_on_its_second_render_fails_both_with_the_cause(store, demo_root, demo_paths):
    settings = _settings(demo_root)
    job = finished_job(store, settings.root, demo_paths)
    first, second = _queue(store, settings, job), _queue(store, settings, job, prompt="again")
    script = ("import os, sys; from studio.jobs import JobStore; s = JobStore(sys.argv[1]); "
              "first = s.get(sys.argv[2]); s.start(sys.argv[3], first.owner); "
              "print('rendering the second', flush=True); os._exit(9)")
    db = str(Workspace(settings.root).db_path)
    worker = Worker(settings, poll_s=0.1, unload_caption=False,
                    render_command=lambda render_id: [sys.executable, "-c", script, db, render_id, second.id])
    done = worker.run_once()
    assert done.id == first.id and done.status == "failed"
    assert done.error.startswith("The render process exited with code 9.")
    failed = store.get(second.id)
    assert failed.status == "failed" and failed.error.startswith("The render process exited with code 9.")
    assert "rendering the second" in failed.error
