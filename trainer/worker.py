"""The training worker (`python -m trainer.worker`): takes one queued job at a time and runs it.

Each job runs in a child process (`python -m trainer.run_job <id>`), so a crash, an out-of-memory
kill or a stuck CUDA call ends that job as `failed` with its cause while the worker lives on.
SIGTERM (a pod stop) asks the running job to checkpoint and stop; the job is marked interrupted and
the next worker to start continues it from that checkpoint. The signal handler only sets a flag; the
loop acts on it. How a job ended is decided in one place, `_conclude`.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from studio import host_claim
from studio.atomic import read_json, sweep_temp_files
from studio.auth import bearer_header
from studio.gpus import workers_for
from studio.jobs import Job
from studio.processes import describe_exit, process_token
from studio.settings import Settings, SettingsError, load_settings
from studio.upgrade import open_job_store
from studio.workspace import Workspace
from trainer import library, podstop, renders, trash
from trainer.job_log import log_tail, stamped
from trainer.job_outputs import JobOutputs
from trainer.recovery import STOP_TIMEOUT_S, reconcile, resume_hint
from trainer.render_runner import TIMEOUT_S as RENDER_TIMEOUT_S
from trainer.render_runner import default_render_command, run_render
from trainer.run_job import OUTCOME_FILE
from trainer.step_dirs import latest_checkpoint_step
from trainer.validation import models_download_wait
from trainer.webhooks import WebhookDispatcher, dispatcher_for

log = logging.getLogger("trainer.worker")
REPO = Path(__file__).resolve().parent.parent


def default_child_command(job_id: str) -> list[str]:
    return [sys.executable, "-m", "trainer.run_job", job_id]


class Worker(JobOutputs):
    def __init__(self, settings: Settings, *, child_command: Callable[[str], list[str]] = default_child_command,
                 render_command: Callable[[str], list[str]] = default_render_command,
                 render_timeout_s: float = RENDER_TIMEOUT_S,
                 poll_s: float = 1.0, heartbeat_s: float = 2.0, stop_timeout_s: float = STOP_TIMEOUT_S,
                 shutdown_grace_s: float = 60.0, pod_stop_grace_s: float = podstop.IDLE_GRACE_S,
                 webhooks: WebhookDispatcher | None = None, unload_caption: bool = True, gpu: str | None = None):
        self.settings = settings
        self.gpu = gpu  # on a pod with several GPUs: the one its jobs see (CUDA_VISIBLE_DEVICES), studio.gpus
        self.workspace = Workspace(settings.root).ensure()
        self.store = open_job_store(self.workspace)
        self.child_command = child_command
        self.render_command = render_command
        self.render_timeout_s = render_timeout_s
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stop_timeout_s = stop_timeout_s
        self.shutdown_grace_s = shutdown_grace_s
        self.pod_stop_grace_s = pod_stop_grace_s
        self.webhooks = webhooks or dispatcher_for(settings)
        self.unload_caption = unload_caption
        self.pid = os.getpid()
        # a row left by a killed worker of this pid (a restarted container gives its programs the same pids) would
        # date this worker's start, and the pod's idle time, from that one's
        self.store.worker_gone(self.pid)
        self.owner = process_token()
        self.shutdown = False
        self._pod_stop_pending = False
        self._pod_stop_again_at: float | None = None  # a stop RunPod could not take is asked again then
        self._last_lora: str | None = None
        self._idle_since = time.monotonic()
        self._waiting = False  # queued jobs wait for a model download (the worker chip says so)
        self._behind: str | None = None  # another pod on this volume came first and runs the jobs (studio.host_claim)
        self._last_idle_beat = 0.0

    # -- the loop ------------------------------------------------------------------------------
    def request_shutdown(self, *_args) -> None:
        self.shutdown = True

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.request_shutdown)
        signal.signal(signal.SIGINT, self.request_shutdown)
        log.info("worker %s started%s; jobs in %s", self.pid, f" on GPU {self.gpu}" if self.gpu is not None else "",
                 self.workspace.jobs)
        self._reconcile()
        for folder in (self.workspace.loras, self.workspace.comfyui_loras):  # copies a killed process left half made
            sweep_temp_files(folder)
        last_reconcile = time.monotonic()
        claiming = threading.Event()
        host_claim.keep(self.workspace.state, claiming)  # another pod on this volume is seen (studio.host_claim)
        try:
            while not self.shutdown:
                job = self.run_once()
                if job is not None:
                    continue
                if time.monotonic() - self._last_idle_beat > 5:
                    self.store.worker_beat(self.pid, "waiting" if self._waiting else "idle")
                    self._last_idle_beat = time.monotonic()
                self._maybe_stop_pod()
                if time.monotonic() - last_reconcile > 10:
                    self._reconcile()
                    last_reconcile = time.monotonic()
                self._sleep(self.poll_s)
        finally:
            claiming.set()
            self.store.worker_gone(self.pid)
            self.webhooks.flush(10.0)
            log.info("worker %s stopped", self.pid)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.shutdown and time.monotonic() < deadline:
            time.sleep(min(0.2, seconds))

    def _reconcile(self) -> None:
        for job in reconcile(self.store, self.workspace.jobs, workspace=self.workspace):
            self.webhooks.job_status(job)

    def run_once(self) -> Job | None:
        """Claim and run the oldest queued render, else the oldest queued training job; None when both
        queues are empty. Renders go first: they take seconds, and someone is watching for them."""
        if self.shutdown:
            return None
        if self._waiting_for_models() or self._another_pod_leads():
            return None
        render = self.store.claim(renders.KIND, self.owner)
        if render is not None:
            return self._render(render)
        job = self.store.claim("train", self.owner)
        if job is None:
            return None
        self._pod_stop_pending, self._pod_stop_again_at = False, None
        self.store.worker_beat(self.pid, "busy", job.id)
        self.store.progress(job.id, {"gpu": self.gpu})  # the job page names it on a pod with several
        log.info("job %s (%s) claimed, attempt %d", job.id, job.name, job.attempts)
        self.webhooks.job_status(job)
        try:
            final = self._run(job)
        except Exception as exc:  # the worker must outlive anything one job does
            log.exception("job %s: the worker could not run it", job.id)
            final = self.store.finish(job.id, "failed", error=f"The worker could not run this job ({exc}).")
        if final is None:
            self.webhooks.job_deleted(job)
        else:
            self.webhooks.job_status(final)
            self._last_lora = final.lora_path if final.status == "completed" else None
        self._pod_stop_pending = True
        self._idle_since = time.monotonic()
        self.store.worker_beat(self.pid, "idle")
        return final or job

    def _render(self, render: Job) -> Job:
        self.store.worker_beat(self.pid, "busy", render.id)
        log.info("render %s of job %s claimed", render.id, render.parent_id)
        try:
            final = run_render(self, render)
        except Exception as exc:  # the worker must outlive anything one render does
            log.exception("render %s: the worker could not run it", render.id)
            final = self.store.finish(render.id, "failed", error=f"The worker could not run this render ({exc}).")
        self._idle_since = time.monotonic()  # the pod is in use: an idle stop counts from here
        self.store.worker_beat(self.pid, "idle")
        return final or render

    def _another_pod_leads(self) -> bool:
        """Two pods on one volume: only the one that came first starts jobs, so a job never runs twice."""
        first = host_claim.leader(self.workspace.state)
        if first != self._behind:
            if first is not None:
                log.warning("machine %s runs a studio on this workspace and came first: it runs the queued jobs; "
                            "this worker starts none while it does", first)
            else:
                log.info("no other machine runs a studio on this workspace now: this worker starts queued jobs")
            self._behind = first
        return first is not None

    def _waiting_for_models(self) -> bool:
        """A model training needs is still downloading: queued jobs wait (the first one says for what)."""
        waiting = models_download_wait(self.settings)
        queue = self.store.queue("train") if waiting else []
        if self._waiting != bool(queue):  # the worker chip says "waiting for models" at once
            self._waiting = bool(queue)
            self.store.worker_beat(self.pid, "waiting" if self._waiting else "idle")
        if waiting is None:
            return False
        message = f"{waiting} It starts by itself when the download is done."
        if queue and queue[0].message != message:
            self.store.update(queue[0].id, message=message)
        return True

    # -- one job -------------------------------------------------------------------------------
    def ask_caption_service_to_unload(self) -> None:
        """The caption model and training cannot share a 24 GB GPU; a failure here is only logged."""
        if not self.unload_caption or not self.settings.caption_url:
            return
        headers = {"Content-Type": "application/json"}
        if self.settings.password:
            headers["Authorization"] = bearer_header(self.settings.password)
        request = urllib.request.Request(self.settings.caption_url + "/unload", data=b"{}", headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                log.info("caption service unloaded its model (HTTP %s)", response.status)
        except (urllib.error.URLError, OSError) as exc:
            log.info("caption service did not unload (%s); training goes on", getattr(exc, "reason", exc))

    def child_env(self, job: Job) -> dict:
        env = dict(os.environ)
        env.update({"STUDIO_ROOT": str(self.settings.root), "STUDIO_DEMO": "1" if self.settings.demo else "0",
                    "TRAINER_PARENT_PID": str(self.pid), "PYTHONUNBUFFERED": "1",
                    "RENDER_KEEP_WARM_S": str(self.settings.render_keep_warm_s)})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def _run(self, job: Job) -> Job | None:
        self.ask_caption_service_to_unload()
        job_dir = self.workspace.job_dir(job.id)
        (job_dir / "control").mkdir(parents=True, exist_ok=True)
        (job_dir / "control" / "stop").unlink(missing_ok=True)  # a stop from an earlier run must not end this one
        if job.details.get(renders.PAUSED):  # nor may a pause left by a run whose worker died pause this one
            self.store.progress(job.id, {renders.PAUSED: None})
        (job_dir / OUTCOME_FILE).unlink(missing_ok=True)  # nor may its outcome be read as this run's
        log_path = job_dir / "log.txt"
        with open(log_path, "ab") as log_file:
            log_file.write(stamped(f"worker {self.pid}: starting attempt {job.attempts}").encode())
            log_file.flush()
            proc = subprocess.Popen(self.child_command(job.id), cwd=REPO, env=self.child_env(job), stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.store.heartbeat(job.id, child_pid=proc.pid)
        forced = self._watch(job, proc, job_dir)
        return self._conclude(job, proc.returncode, job_dir, forced)

    def _watch(self, job: Job, proc: subprocess.Popen, job_dir: Path) -> str | None:
        """Wait for the child, beating the heart and relaying stop requests; returns why it was killed."""
        stop_sent_at = None
        last_beat = 0.0
        while True:
            try:
                proc.wait(timeout=0.5)
                return None
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            try:
                if now - last_beat >= self.heartbeat_s:
                    last_beat = now
                    self.store.heartbeat(job.id)
                    self.store.worker_beat(self.pid, "busy", job.id)
                current = self.store.find(job.id)
            except sqlite3.Error as exc:  # a full disk or a long lock must not abandon the running child
                log.warning("job %s: could not reach the job store (%s); retrying", job.id, exc)
                continue
            if stop_sent_at is None and (self.shutdown or current is None or current.stopping):
                if self.shutdown and current is not None:
                    self.store.progress(job.id, {"message": "The worker is shutting down: saving a checkpoint."})
                (job_dir / "control" / "stop").touch()  # what the training process polls
                stop_sent_at = now
                log.info("job %s: stop requested", job.id)
            limit = self.shutdown_grace_s if self.shutdown else self.stop_timeout_s
            if stop_sent_at is not None and now - stop_sent_at > limit:
                log.warning("job %s did not stop within %.0f s; ending it", job.id, limit)
                proc.kill()
                proc.wait()
                return f"it did not stop within {limit:.0f} s and was ended"

    def _conclude(self, job: Job, returncode: int, job_dir: Path, forced: str | None) -> Job | None:
        """The one place that decides how a training run ended, from what the training process reported
        (`outcome.json`), whether a stop was asked for, and how the process exited."""
        outcome = read_json(job_dir / OUTCOME_FILE, {}) or {}
        current = self.store.find(job.id)
        if current is None:  # deleted while it ran: the row is gone, remove what is left
            library.remove_job_files(self.workspace, job.id)
            return None
        paused = current.details.get(renders.PAUSED)
        if paused:  # asked for this run only, however it ends (and cleared again when a run starts)
            self.store.progress(job.id, {renders.PAUSED: None})
        checkpoint = latest_checkpoint_step(job_dir)
        hint = resume_hint(checkpoint)
        step = outcome.get("step") or current.step
        if current.control == "delete":
            stopped = self.store.finish(job.id, "stopped", message="Stopped before deletion.")
            trash.trash_job(self.workspace, self.store, stopped)  # kept a while in Recently deleted
            return None
        kind = outcome.get("outcome")
        if kind == "completed":
            result = outcome.get("result") or {}
            return self._complete(current, result)
        detail = f" ({forced})" if forced else ""
        if current.stopping and (kind == "stopped" or kind is None):  # a child ended by the stop itself counts too
            self.store.finish(job.id, "stopped", resumable=True,
                              message=f"Stopped at step {step} because you asked{detail}. {hint}")
            if paused:  # paused for renders: they go first, then it goes on
                return self.store.resume(job.id, f"Paused at step {step} for the renders; it continues from "
                                                 f"step {checkpoint or 0} by itself once they are done.")
            return self.store.get(job.id)
        if self.shutdown and (kind == "stopped" or kind is None):
            # not the user's wish: the next worker continues it, and this run does not count as a failed attempt
            self.store.update(job.id, attempts=0)
            return self.store.finish(job.id, "interrupted", resumable=True,
                                     message=f"Interrupted at step {step}: the worker shut down (a pod stop or "
                                             f"restart){detail}. {hint}")
        if kind == "stopped":  # the training process was signalled by someone else
            return self.store.finish(job.id, "interrupted", resumable=True,
                                     message=f"Interrupted at step {step}: the training process was asked to end. "
                                             f"{hint}")
        if kind == "error":
            return self.store.finish(job.id, "failed", resumable=checkpoint is not None, error=outcome.get("error"))
        tail = log_tail(job_dir / "log.txt")
        error = f"The training process {describe_exit(returncode)} at step {step}."
        if tail:
            error += " Last log lines:\n" + "\n".join(tail)
        log.error("job %s failed: %s", job.id, error)
        return self.store.finish(job.id, "failed", resumable=checkpoint is not None, error=error)

    # -- stopping the pod when idle ------------------------------------------------------------
    def _maybe_stop_pod(self) -> None:
        if not self._pod_stop_pending or podstop.pod_stop_configured(self.settings):
            return
        streaming, ended = podstop.downloads(self.settings)  # a LoRA or a ZIP on its way to the user's computer
        if streaming or self.store.count(("queued", "running"), work=True):  # any job: a render, captions, an export
            self._idle_since = time.monotonic()  # the minute's grace counts from the end of that one too
            self._pod_stop_again_at = None  # and the stop after it is asked afresh
            return
        if ended is not None:  # a download that ended between two looks
            self._idle_since = max(self._idle_since, time.monotonic() - max(0.0, time.time() - ended))
        if time.monotonic() - self._idle_since < self.pod_stop_grace_s:
            return
        later = self._pod_stop_again_at is not None
        if later and time.monotonic() < self._pod_stop_again_at:
            return
        if not podstop.lora_is_safe(self._last_lora):
            log.warning("not stopping the pod: the last LoRA %s is not complete on disk", self._last_lora)
            self._pod_stop_pending = False
            return
        self.webhooks.flush(10.0)
        self._pod_stop_pending, self._pod_stop_again_at = False, None
        if podstop.stop_pod(self.settings, later=later):
            return
        if self.store.count(("queued", "running"), work=True):
            self._pod_stop_pending = True  # work came while RunPod was asked again: the pod stops after it
            self._idle_since = time.monotonic()
        elif not (podstop.last_stop(self.settings) or {}).get("lasting"):  # RunPod down a while: the pod would bill
            self._pod_stop_pending = True  # all night; asked again while nothing runs
            self._pod_stop_again_at = time.monotonic() + podstop.RETRY_LATER_S
            log.warning("RunPod did not stop the pod; asking again in %.0f minutes", podstop.RETRY_LATER_S / 60)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="The training worker.")
    parser.add_argument("--slot", type=int, default=1, help="which of the pod's workers (1 trains on the first GPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    gpus = workers_for(settings)
    if not 1 <= args.slot <= len(gpus):
        log.info("worker %d is not needed: this machine runs %d (GPU_WORKERS, studio.gpus)", args.slot, len(gpus))
        return 0
    Worker(settings, gpu=gpus[args.slot - 1]).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
