"""The training workers a pod runs: one per GPU, so a pod with two or more GPUs trains that many queued jobs at
once (variants side by side, a queue left overnight). Each worker's jobs see only its own GPU
(CUDA_VISIBLE_DEVICES), where they load, train and render as on a one-GPU pod.

GPU_WORKERS caps the count (1: one job at a time, on the first GPU). Without a GPU there is one worker, or
GPU_WORKERS of them sharing the CPU (the demo and the tests). Torch-free: supervisord's start and the web pages
ask it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

log = logging.getLogger(__name__)


def visible_gpus(environ=None) -> list[str]:
    """The GPUs this machine gives the studio, as CUDA_VISIBLE_DEVICES names them: the variable's own list when
    it is set, else "0", "1", ... for each GPU nvidia-smi lists (none without it)."""
    environ = os.environ if environ is None else environ
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [name.strip() for name in given.split(",") if name.strip() and name.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("no GPU listed by nvidia-smi: %s", exc)
        return []
    return [str(index) for index in range(sum(line.startswith("GPU ") for line in out.splitlines()))]


def worker_gpus(wanted: int, gpus: list[str]) -> list[str | None]:
    """The GPU of each training worker, one entry per worker (`wanted`: GPU_WORKERS, 0 for one per GPU). None:
    the worker's jobs see what the machine has (one GPU, or none)."""
    if len(gpus) <= 1:  # two jobs on one GPU would only run each other out of memory; the CPU may share
        return [None] * (max(wanted, 1) if not gpus else 1)
    return list(gpus[: wanted or len(gpus)])


def workers_for(settings, environ=None) -> list[str | None]:
    return worker_gpus(settings.gpu_workers, visible_gpus(environ))
