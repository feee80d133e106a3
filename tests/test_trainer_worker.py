"""The worker: runs jobs in a child process, survives crashes, handles SIGTERM, recovers after a kill,
sends signed webhooks with retries, asks the caption service to unload, and can stop the pod when idle.

Most tests swap the engine for a small fake (`fake_train`, run as `python -m tests.test_trainer_worker <id>`)
so crashes and timings can be staged; `test_real_engine_job` runs the real engine on the tiny demo model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from studio.jobs import JobStore
from studio.settings import load_settings
from studio.workspace import Workspace
from tests.helpers import REPO
from trainer.step_dirs import latest_checkpoint_step
from trainer.webhooks import SIGNATURE_HEADER, WebhookDispatcher, verify
from trainer.worker import Worker

# -- the fake engine (runs in the child process) ------------------------------------------------


class FileControl:
    def __init__(self, job_dir: Path):
        self.dir = Path(job_dir) / "control"

    def should_stop(self) -> bool:
        return (self.dir / "stop").exists()

    def take_requests(self) -> set[str]:
        taken = set()
        for name in ("sample", "save"):
            if (self.dir / name).exists():
                (self.dir / name).unlink()
                taken.add(name)
        return taken


class TrainingError(RuntimeError):
    """Named like the engine's: the child reports its message as the job's error."""


def _fake_safetensors(path: Path, steps: int = 0) -> None:
    """A tiny LoRA file, written as the engine writes its files (a new file replaces the old one)."""
    header = json.dumps({"__metadata__": {"rank": "4", "steps": str(steps)},
                         "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_bytes(len(header).to_bytes(8, "little") + header.encode() + b"\0\0\0\0")
    path.with_suffix(".tmp").replace(path)


def _save_checkpoint(job_dir: Path, step: int) -> None:
    folder = job_dir / "checkpoints" / f"step_{step:06d}"
    _fake_safetensors(folder / "lora.safetensors")
    (folder / "state.pt").write_bytes(b"state")


def fake_train(config, dataset_dir, job_dir, paths, control, on_progress):
    mode, total, delay = config.get("mode", "ok"), config.get("steps", 6), config.get("delay", 0.05)
    start = latest_checkpoint_step(job_dir) or 0
    print(f"fake: starting at step {start}", flush=True)
    for step in range(start + 1, total + 1):
        if mode != "stubborn" and control.should_stop():
            _save_checkpoint(job_dir, step - 1)
            print(f"fake: stopped after step {step - 1}", flush=True)
            return {"stopped": True, "steps": step - 1}
        time.sleep(delay)
        if step == 3 and mode == "crash":
            print("fake: something went badly wrong", flush=True)
            os._exit(7)
        if step == 3 and mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if step == 2 and mode == "error":
            raise TrainingError("The dataset has no usable images: add images and export it again.")
        with open(job_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, "loss": 1.0 / step, "smooth_loss": 1.0 / step}) + "\n")
        on_progress({"phase": "training", "step": step, "total_steps": total, "loss": 1.0 / step, "eta_s": 1.0})
        requests = control.take_requests()
        if step % config.get("save_every", 2) == 0 or "save" in requests:
            _save_checkpoint(job_dir, step)
    lora = job_dir / "lora" / f"{config.get('name', 'fake')}.safetensors"
    _fake_safetensors(lora, total)
    if mode == "early":  # stop_when_overfitting: back to the checkpoint at step 2, the later ones deleted
        for folder in (job_dir / "checkpoints").glob("step_*"):
            if int(folder.name[5:]) > 2:
                shutil.rmtree(folder)
        on_progress({"phase": "done", "step": 2, "total_steps": total, "loss": 0.5})
        return {"lora_path": str(lora), "steps": 2, "final_loss": 0.5, "stopped_early_at": total}
    return {"lora_path": str(lora), "steps": total, "final_loss": 1.0 / total}


def fake_command(job_id: str) -> list[str]:
    return [sys.executable, "-m", "tests.test_trainer_worker", job_id]


def _fake_main(job_id: str) -> int:
    from trainer.run_job import die_with_parent, execute

    die_with_parent()
    return execute(load_settings(), job_id, train_fn=fake_train, parse_config=lambda recipe, config: config,
                   control_factory=FileControl)


# -- a local HTTP receiver (webhooks, caption service, RunPod stand-in) --------------------------


class Receiver:
    def __init__(self, codes=()):
        self.codes = list(codes)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    made = []

    def make(codes=()):
        made.append(Receiver(codes))
        return made[-1]

    yield make
    for item in made:
        item.close()


def _worker(settings, **kw) -> Worker:
    options = {"child_command": fake_command, "poll_s": 0.1, "heartbeat_s": 0.3}
    options.update(kw)
    return Worker(settings, **options)


def _job(store: JobStore, hook: str | None = None, **config):
    return store.create("train", name="fake job", recipe="zimage-turbo", config={"name": "fake", **config},
                        dataset="d", total=config.get("steps", 6), webhook_url=hook)[0]


def _wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- tests --------------------------------------------------------------------------------------


def test_job_completes_publishes_lora_and_signs_webhooks(make_settings, receiver):
    caption, hooks = receiver(), receiver()
    settings = make_settings(WEBHOOK_SECRET="hook-secret", CAPTION_URL=caption.url, STUDIO_PASSWORD="pw",
                             ALLOW_PRIVATE_URLS=1)  # the receiver is on this machine
    Path(settings.root, "ComfyUI", "models", "loras").mkdir(parents=True)
    worker = _worker(settings)
    job = _job(worker.store, steps=4, hook=hooks.url + "/hook")
    done = worker.run_once()
    assert done.status == "completed", done.error
    assert done.step == 4 and done.loss == pytest.approx(0.25)
    assert (worker.workspace.loras / "fake.safetensors").is_file() and done.result["library_file"] == "fake.safetensors"
    assert (settings.root / "ComfyUI" / "models" / "loras" / "fake.safetensors").is_file()
    unload = caption.wait(1)[0]
    assert unload["path"] == "/unload" and unload["headers"]["Authorization"] == "Bearer pw"
    sent = hooks.wait(2)
    events = [json.loads(item["body"])["event"] for item in sent]
    assert events == ["job.running", "job.completed"]
    for item in sent:
        assert verify(item["body"], "hook-secret", item["headers"][SIGNATURE_HEADER])
        assert item["headers"][SIGNATURE_HEADER].startswith("sha256=")
    assert json.loads(sent[1]["body"])["job"]["id"] == job.id


def test_a_job_stopped_early_completes_at_its_best_checkpoint_and_can_go_on(settings):
    worker = _worker(settings)
    job = _job(worker.store, steps=6, mode="early")
    done = worker.run_once()
    assert done.status == "completed", done.error
    assert done.step == 2 and done.total_steps == 2 and done.result["stopped_early_at"] == 6
    assert done.message.startswith("Stopped early at step 6: the held-out images' loss rose, so the LoRA is the "
                                   "checkpoint at step 2, final loss 0.5000.")
    assert latest_checkpoint_step(worker.workspace.jobs / job.id) == done.step  # what Train more steps needs


def test_webhook_retries_with_backoff_until_delivered(receiver):
    hooks = receiver(codes=[500, 503])
    dispatcher = WebhookDispatcher("s", attempts=4, base_delay_s=0.05, allow_private=True)
    started = time.monotonic()
    dispatcher.send(hooks.url, "job.failed", {"job": {"id": "x"}})  # returns at once: never blocks training
    assert time.monotonic() - started < 0.5
    assert dispatcher.flush(20)
    assert len(hooks.requests) == 3 and dispatcher.delivered == 1
    assert len({item["headers"]["X-Studio-Delivery"] for item in hooks.requests}) == 1
    assert verify(hooks.requests[-1]["body"], "s", hooks.requests[-1]["headers"][SIGNATURE_HEADER])
    assert not verify(hooks.requests[-1]["body"], "other", hooks.requests[-1]["headers"][SIGNATURE_HEADER])


def test_webhook_gives_up_after_its_attempts(receiver):
    hooks = receiver(codes=[500] * 5)
    dispatcher = WebhookDispatcher(None, attempts=2, base_delay_s=0.01, allow_private=True)
    dispatcher.send(hooks.url, "job.failed", {})
    assert dispatcher.flush(10)
    assert dispatcher.failed == 1 and len(hooks.requests) == 2
    assert SIGNATURE_HEADER not in hooks.requests[0]["headers"]


@pytest.mark.parametrize("mode,expected", [("crash", "exited with code 7"), ("kill", "SIGKILL"),
                                           ("error", "The dataset has no usable images")])
def test_crashing_job_fails_with_its_cause_and_the_worker_lives_on(settings, mode, expected):
    worker = _worker(settings)
    bad = _job(worker.store, mode=mode, steps=5)
    good = _job(worker.store, steps=2)
    failed = worker.run_once()
    assert failed.id == bad.id and failed.status == "failed"
    assert expected in failed.error
    if mode == "crash":
        assert "something went badly wrong" in failed.error  # the last log lines come with it
    assert failed.resumable == (mode != "error")  # crash and kill happen after the checkpoint at step 2
    assert worker.run_once().id == good.id and worker.store.get(good.id).status == "completed"


def test_stop_and_resume_continue_from_the_checkpoint(settings):
    worker = _worker(settings)
    job = _job(worker.store, steps=40, delay=0.05, save_every=100)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait(lambda: worker.store.get(job.id).step >= 3, what="steps")
    worker.store.request_stop(job.id)
    thread.join(30)
    stopped = worker.store.get(job.id)
    assert stopped.status == "stopped" and stopped.resumable, stopped.message
    at = latest_checkpoint_step(worker.workspace.jobs / job.id)
    assert at is not None and at >= 3 and f"step {at}" in stopped.message
    worker.store.resume(job.id)
    with worker.store.write() as conn:  # make the rest short
        conn.execute("UPDATE jobs SET config = json_set(config, '$.delay', 0.0) WHERE id = ?", (job.id,))
    assert worker.run_once().status == "completed"
    assert f"fake: starting at step {at}" in (worker.workspace.jobs / job.id / "log.txt").read_text()


def test_stubborn_job_is_ended_after_the_stop_timeout(settings):
    worker = _worker(settings, stop_timeout_s=0.5)
    job = _job(worker.store, mode="stubborn", steps=400, delay=0.05)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait(lambda: worker.store.get(job.id).step >= 2, what="steps")
    worker.store.request_stop(job.id)
    thread.join(30)
    final = worker.store.get(job.id)
    assert final.status == "stopped" and "did not stop within" in final.message


def test_deleting_a_running_job_stops_it_first(settings):
    worker = _worker(settings)
    job = _job(worker.store, steps=400, delay=0.05)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait(lambda: worker.store.get(job.id).step >= 2, what="steps")
    worker.store.request_stop(job.id, delete=True)
    thread.join(30)
    assert worker.store.find(job.id) is None
    assert not (worker.workspace.jobs / job.id).exists()
    # kept in Recently deleted, stopped, with its checkpoints: it can come back and go on
    from trainer import trash

    (entry,) = trash.entries(worker.workspace)
    assert entry["kind"] == "job" and entry["name"] == job.name
    assert trash.restore(worker.workspace, worker.store, entry["id"])["id"] == job.id
    assert worker.store.get(job.id).status == "stopped" and (worker.workspace.jobs / job.id / "checkpoints").is_dir()


def test_pod_stops_when_the_queue_is_empty(make_settings, receiver):
    runpod = receiver()
    settings = make_settings(STOP_POD_WHEN_IDLE=1, RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key",
                             RUNPOD_API_URL=runpod.url + "/v1")
    worker = _worker(settings, pod_stop_grace_s=0)
    _job(worker.store, steps=2)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    worker._maybe_stop_pod()
    assert runpod.requests == []  # one job still waits
    assert worker.run_once().status == "completed"
    worker._maybe_stop_pod()
    (call,) = runpod.wait(1)
    assert call["path"] == "/v1/pods/pod123/stop" and call["headers"]["Authorization"] == "Bearer rp-key"
    worker._maybe_stop_pod()
    assert len(runpod.requests) == 1  # once per idle period


def test_pod_stop_is_off_by_default(settings, receiver):
    worker = _worker(settings, pod_stop_grace_s=0)
    _job(worker.store, steps=1)
    worker.run_once()
    worker._maybe_stop_pod()  # no settings: nothing to call, nothing raised


def test_the_dashboards_choice_stops_the_pod_but_not_while_captions_are_written(make_settings, receiver):
    from trainer import podstop

    runpod = receiver()
    settings = make_settings(RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key", RUNPOD_API_URL=runpod.url + "/v1")
    worker = _worker(settings, pod_stop_grace_s=0)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    worker._maybe_stop_pod()
    assert runpod.requests == []  # STOP_POD_WHEN_IDLE is off and nobody chose otherwise
    podstop.choose_stop_when_idle(settings, True)  # "Stop the pod when the queue is done", ticked
    captions, _ = worker.store.create("caption", name="captions", dataset="d", total=40)
    worker.store.start(captions.id, "someone")
    worker._maybe_stop_pod()
    assert runpod.requests == []  # the dataset manager is still writing captions with the GPU
    worker.store.finish(captions.id, "completed")
    # an Express run whose tab was closed before its files went up waits for them: it is no work
    waiting, _ = worker.store.create("express", name="left", dataset="d", total=4)
    worker.store.start(waiting.id, None)
    worker.store.progress(waiting.id, {"phase": "upload"})
    worker._maybe_stop_pod()
    (call,) = runpod.wait(1)
    assert call["path"] == "/v1/pods/pod123/stop"


def test_the_pods_minute_of_grace_counts_from_the_end_of_the_last_work_of_any_kind(make_settings, receiver):
    """Captions (or an import, an export) that run past the minute after the last training job: the pod must not
    stop the instant they end, as if the minute had passed: the page promised a minute after the queue is done."""
    import time as clock

    runpod = receiver()
    settings = make_settings(STOP_POD_WHEN_IDLE=1, RUNPOD_POD_ID="pod123", RUNPOD_API_KEY="rp-key",
                             RUNPOD_API_URL=runpod.url + "/v1")
    worker = _worker(settings, pod_stop_grace_s=60)
    _job(worker.store, steps=2)
    assert worker.run_once().status == "completed"
    captions, _ = worker.store.create("caption", name="captions", dataset="d", total=40)
    worker.store.start(captions.id, "someone")
    worker._idle_since = clock.monotonic() - 120  # the training job ended two minutes ago
    worker._maybe_stop_pod()
    worker.store.finish(captions.id, "completed")  # the captions end now
    worker._maybe_stop_pod()
    assert runpod.requests == []  # a minute from now, not at once
    worker._idle_since -= 61
    worker._maybe_stop_pod()
    (call,) = runpod.wait(1)
    assert call["path"] == "/v1/pods/pod123/stop"


def _start_worker_process(root: Path, log_path: Path) -> subprocess.Popen:
    code = ("from studio.settings import load_settings; from trainer.worker import Worker; "
            "from tests.test_trainer_worker import fake_command; import logging; logging.basicConfig(level=20); "
            "Worker(load_settings(), child_command=fake_command, poll_s=0.1, heartbeat_s=0.3).run_forever()")
    env = {**os.environ, "STUDIO_ROOT": str(root), "PYTHONPATH": str(REPO), "CAPTION_URL": "http://127.0.0.1:9"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=open(log_path, "ab"),
                            stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_next_worker_continues(settings, studio_root):
    store = JobStore(Workspace(settings.root).ensure().db_path)
    job = _job(store, steps=400, delay=0.05, save_every=1000)
    proc = _start_worker_process(studio_root, studio_root / "worker.log")
    try:
        _wait(lambda: store.get(job.id).step >= 3, what="steps")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    final = store.get(job.id)
    assert final.status == "interrupted" and final.resumable and "worker shut down" in final.message
    at = latest_checkpoint_step(Workspace(settings.root).jobs / job.id)
    assert at >= 3 and final.attempts == 0  # a pod stop is not a failed attempt
    assert store.workers() == []
    with store.write() as conn:  # faster from here on
        conn.execute("UPDATE jobs SET config = json_set(config, '$.delay', 0.0) WHERE id = ?", (job.id,))
    second = _start_worker_process(studio_root, studio_root / "worker2.log")
    try:
        done = _wait(lambda: (j := store.get(job.id)).status in ("completed", "failed") and j, what="completion")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert done.status == "completed", done.error
    log = (Workspace(settings.root).jobs / job.id / "log.txt").read_text()
    assert f"fake: starting at step {at}" in log
    (requeued,) = [line for line in log.splitlines() if "Queued again" in line]  # says where it goes on, once
    assert requeued.endswith(f"It continues from the checkpoint at step {at}. Queued again."), requeued


@pytest.mark.slow
def test_killed_worker_job_resumes_after_restart(settings, studio_root):
    store = JobStore(Workspace(settings.root).ensure().db_path)
    job = _job(store, steps=30, delay=0.1, save_every=2)
    first = _start_worker_process(studio_root, studio_root / "worker1.log")
    try:
        _wait(lambda: latest_checkpoint_step(Workspace(settings.root).jobs / job.id), what="a checkpoint")
        child = store.get(job.id).child_pid
        first.kill()  # SIGKILL: no chance to clean up
        first.wait(10)
    finally:
        first.kill()
    # the training child dies with its worker, so two processes never write one job folder
    _wait(lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2],
          timeout=10, what="the child to end")
    assert store.get(job.id).status == "running"
    second = _start_worker_process(studio_root, studio_root / "worker2.log")
    try:
        with store.write() as conn:  # faster from here on
            conn.execute("UPDATE jobs SET config = json_set(config, '$.delay', 0.0) WHERE id = ?", (job.id,))
        final = _wait(lambda: (j := store.get(job.id)).status in ("completed", "failed") and j, what="completion")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert final.status == "completed", final.error
    assert final.attempts == 2
    log = (Workspace(settings.root).jobs / job.id / "log.txt").read_text()
    assert "fake: starting at step 0" in log and log.count("fake: starting at step") == 2
    assert "fake: starting at step 0" not in log.split("starting attempt 2")[1]
    # the log says why a second attempt started, and from where
    why = log.split("starting attempt 2")[0].splitlines()[-2]
    assert re.search(r"Interrupted at \d+ of 30: the process running it ended \(a restart or a crash\)\. Queued "
                     r"again\. It continues from the checkpoint at step \d+\.$", why), why


def _png(path: Path, size=(64, 64), color=(200, 40, 40)) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(40, 40, 220))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def make_export(root: Path, name: str = "tiny-set", count: int = 4) -> Path:
    folder = Workspace(root).exports / name
    for i in range(count):
        _png(folder / f"img{i}.png", color=(40 * i, 120, 200 - 30 * i))
        (folder / f"img{i}.txt").write_text(f"tok, a test picture number {i}")
    (folder / "dataset.json").write_text(json.dumps({"name": name, "trigger_word": "tok", "images": count}))
    return folder


TINY_CONFIG = {"name": "tiny-lora", "trigger_word": "tok", "steps": 6, "rank": 4, "resolutions": [64],
               "sample_every": 3, "save_every": 3, "sample_width": 64, "sample_height": 64, "sample_steps": 2,
               "sample_prompts": ["tok, a red circle"], "learning_rate": 0.001}


@pytest.mark.slow
def test_real_engine_job(demo_root):
    settings = load_settings({"STUDIO_ROOT": str(demo_root), "STUDIO_DEMO": "1", "CAPTION_URL": "http://127.0.0.1:9"})
    make_export(demo_root)
    worker = Worker(settings, poll_s=0.1)
    job = worker.store.create("train", name="tiny", recipe="zimage-turbo", config=TINY_CONFIG, dataset="tiny-set",
                              total=6)[0]
    done = worker.run_once()
    assert done.id == job.id and done.status == "completed", done.error
    assert done.step == 6 and done.details["loss"] is not None
    # runs are compared by the smoothed loss: the message, the README and the library all give that figure
    smooth = done.details["smooth_loss"]
    assert done.result["final_smooth_loss"] == pytest.approx(smooth) and f"final loss {smooth:.4f}" in done.message
    readme = (worker.workspace.jobs / job.id / "lora" / "README.txt").read_text()
    assert f"Final loss:        {smooth:.4f} (smoothed)" in readme
    assert Path(done.lora_path).is_file() and (worker.workspace.loras / Path(done.lora_path).name).is_file()
    job_dir = worker.workspace.jobs / job.id
    assert list((job_dir / "samples").glob("step_*/*.png"))
    assert latest_checkpoint_step(job_dir) is not None


if __name__ == "__main__":
    sys.exit(_fake_main(sys.argv[1]))
