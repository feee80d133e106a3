"""Finished LoRAs: placing them in the library (and ComfyUI's loras folder), listing and reading them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

from studio.jobs import Job
from studio.workspace import Workspace
from trainer.step_dirs import step_dirs

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def _place(source: Path, target: Path) -> None:
    """Hard-link when the disk allows (no extra space), else copy; atomic either way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def library_name(workspace: Workspace, job: Job, lora: Path) -> str:
    """The file's own name, unless another job's LoRA already has it."""
    target = workspace.loras / lora.name
    if not target.exists() or _same_file(target, lora):
        return lora.name
    return f"{lora.stem}-{job.id}{lora.suffix}"


def publish(workspace: Workspace, job: Job, lora: Path) -> list[Path]:
    """Put the finished LoRA into trainer/loras (and ComfyUI's models/loras when ComfyUI is installed)."""
    name = library_name(workspace, job, lora)
    placed = []
    targets = [workspace.loras / name]
    if workspace.comfyui_loras is not None:
        targets.append(workspace.comfyui_loras / name)
    for target in targets:
        _place(lora, target)
        placed.append(target)
    log.info("job %s: LoRA placed at %s", job.id, ", ".join(map(str, placed)))
    return placed


def remove_job_files(workspace: Workspace, job_id: str) -> None:
    folder = workspace.job_dir(job_id)
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("could not remove all of %s: %s", folder, exc)


def safetensors_metadata(path: Path) -> dict:
    """The `__metadata__` of a .safetensors header, read without loading any tensor."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 50_000_000:
                return {}
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    meta = header.get("__metadata__") or {}
    meta = {str(k): str(v) for k, v in meta.items()}
    meta["tensors"] = str(len([k for k in header if k != "__metadata__"]))
    return meta


def samples(job_dir: Path) -> list[dict]:
    """Sample images per step: [{step, images: [relative paths], prompts: [...]}], oldest first."""
    out = []
    for step, folder in step_dirs(job_dir / "samples"):
        images = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                        key=lambda p: (len(p.stem), p.stem))
        if not images:
            continue
        prompts = _prompts(folder / "prompts.json")
        out.append({"step": step, "images": [f"samples/{folder.name}/{p.name}" for p in images],
                    "prompts": prompts})
    return out


def _prompts(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    if isinstance(data, dict):
        data = data.get("prompts", [])
    return [str(p) if not isinstance(p, dict) else str(p.get("prompt", "")) for p in data] if isinstance(data, list) \
        else []


def checkpoints(job_dir: Path) -> list[dict]:
    out = []
    for step, folder in step_dirs(job_dir / "checkpoints"):
        lora = folder / "lora.safetensors"
        if lora.is_file():
            out.append({"step": step, "file": f"checkpoints/{folder.name}/lora.safetensors",
                        "size": lora.stat().st_size, "complete": (folder / "state.pt").is_file()})
    return out


def final_lora(job: Job, job_dir: Path) -> Path | None:
    """The job's LoRA file in its folder (the recorded path may name a workspace that has since moved)."""
    recorded = Path(job.lora_path) if job.lora_path else None
    if recorded is not None and recorded.is_file() and job_dir.resolve() in recorded.resolve().parents:
        return recorded
    if recorded is not None and (job_dir / "lora" / recorded.name).is_file():
        return job_dir / "lora" / recorded.name
    found = sorted((job_dir / "lora").glob("*.safetensors"))
    return found[0] if found else None


def entry(job: Job, job_dir: Path) -> dict | None:
    """One library card: the job's finished LoRA with size, metadata and its last samples."""
    lora = final_lora(job, job_dir)
    if lora is None:
        return None
    try:
        relative = lora.resolve().relative_to(job_dir.resolve()).as_posix()
    except ValueError:
        return None
    shots = samples(job_dir)
    return {
        "job_id": job.id, "name": job.name, "file": lora.name, "path": relative, "size": lora.stat().st_size,
        "dataset": job.dataset, "recipe": job.recipe, "finished_at": job.finished_at, "steps": job.step,
        "loss": job.loss, "metadata": safetensors_metadata(lora),
        "samples": shots[-1] if shots else None,
        "trigger_word": job.config.get("trigger_word"),
    }
