"""Finished LoRAs: placing them in the library (and ComfyUI's loras folder), listing and reading them."""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
from pathlib import Path

from studio.atomic import place_file
from studio.jobs import Job
from studio.web import ApiError
from studio.workspace import Workspace, confined, safe_name
from trainer.leak import LEAKS, mean_share
from trainer.library_facts import safetensors_metadata, shown
from trainer.step_dirs import step_dirs

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def same_bytes(a: Path, b: Path) -> bool:
    """One file, or two copies with the same content (publish copies where it cannot hard-link)."""
    try:
        return same_file(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def library_name(workspace: Workspace, job: Job, lora: Path, own: str | None = None) -> str:
    """`own` (the job's library file from an earlier finish: a LoRA trained further replaces it), else the
    file's own name, unless another job's LoRA already has it or ComfyUI's loras has a file of its own by that name
    (<name>-<job id> then)."""
    if own:
        return confined(workspace.loras, own).name
    target = workspace.loras / lora.name
    if (not target.exists() or same_file(target, lora)) and comfyui_clash(workspace, lora.name, lora) is None:
        return lora.name
    return f"{lora.stem}-{job.id}{lora.suffix}"


def library_copy(workspace: Workspace, job: Job, lora: Path) -> Path | None:
    """The job's LoRA in trainer/loras, as the worker recorded it when it placed it there; for jobs of
    earlier releases, found under its own name or <name>-<job id> (the name was taken) by its content."""
    recorded = (job.result or {}).get("library_file")
    if recorded:
        path = confined(workspace.loras, recorded)
        return path if path.is_file() else None
    for name in (lora.name, f"{lora.stem}-{job.id}{lora.suffix}"):
        path = workspace.loras / name
        if path.is_file() and same_bytes(path, lora):
            return path
    return None


def library_lora(loras: Path, name: str) -> Path:
    """The library's LoRA file `name` (a request's, confined to trainer/loras: UnsafePathError when it names
    anything else); ApiError 404 when there is no such .safetensors file."""
    path = confined(loras, safe_name(name))
    if not path.is_file() or path.suffix != ".safetensors":
        raise ApiError(f"The library has no LoRA {name!r}.", 404)
    return path


def remove_from_library(workspace: Workspace, name: str) -> list[Path]:
    """Deletes a LoRA from trainer/loras and its copy in ComfyUI's models/loras (only when that copy is the
    same file or the same bytes: a different file of the same name there is not ours). Returns what went."""
    path = library_lora(workspace.loras, name)
    removed = []
    comfy = workspace.comfyui_loras
    if comfy is not None and (comfy / path.name).is_file() and same_bytes(comfy / path.name, path):
        (comfy / path.name).unlink()
        removed.append(comfy / path.name)
    path.unlink()
    removed.append(path)
    log.info("removed from the library: %s", ", ".join(map(str, removed)))
    return removed


def publish(workspace: Workspace, job: Job, lora: Path, own: str | None = None) -> list[Path]:
    """Put the finished LoRA into trainer/loras (and ComfyUI's models/loras when ComfyUI is installed), under
    the job's `own` library name when it has one (see library_name)."""
    target = workspace.loras / library_name(workspace, job, lora, own)
    comfy = workspace.comfyui_loras / target.name if workspace.comfyui_loras else None
    ours = comfy is not None and target.is_file() and same_bytes(comfy, target)  # the copy this job placed before
    place_file(lora, target)
    placed = also_in_comfyui(workspace, target, replace=ours)
    log.info("job %s: LoRA placed at %s", job.id, ", ".join(map(str, placed)))
    return placed


def also_in_comfyui(workspace: Workspace, path: Path, replace: bool = False) -> list[Path]:
    """`path`, a file in trainer/loras, also placed in ComfyUI's models/loras when ComfyUI is installed; returns
    where the file is now. A file of ComfyUI's own of that name (not these bytes) is never replaced unless `replace`
    (it is the library's earlier copy of this file): the library's stays out of ComfyUI's folder then."""
    if workspace.comfyui_loras is None:
        return [path]
    target = workspace.comfyui_loras / path.name
    if not replace and comfyui_clash(workspace, path.name, path) is not None:
        log.warning("ComfyUI's loras holds another file named %s: the library's is not placed there", path.name)
        return [path]
    place_file(path, target)
    return [path, target]


def comfyui_clash(workspace: Workspace, name: str, ours: Path) -> Path | None:
    """A file in ComfyUI's loras named `name` (case aside) that is not `ours` (the same file or the same bytes): one
    of ComfyUI's own, which a library file of that name would replace there."""
    folder = workspace.comfyui_loras
    if folder is None or not folder.is_dir():
        return None
    return next((other for other in folder.glob("*.safetensors")
                 if other.name.lower() == name.lower() and not same_bytes(other, ours)), None)


def twin(loras: Path, path: Path) -> Path | None:
    """The library file that is `path` or has its bytes (the same LoRA added before), None when there is none."""
    size = path.stat().st_size
    for other in sorted(loras.glob("*.safetensors")):
        try:
            if other.stat().st_size == size and same_bytes(other, path):
                return other
        except OSError:  # deleted meanwhile
            continue
    return None


def checkpoint_name(job: Job, step: int) -> str:
    """A checkpoint's LoRA under a name that says what it is: <LoRA name>-step<N>.safetensors."""
    return f"{job.config.get('name') or 'lora'}-step{step}.safetensors"


def checkpoint_file(workspace: Workspace, job: Job, step: int) -> Path:
    path = confined(workspace.jobs, job.id, "checkpoints", f"step_{step:06d}", "lora.safetensors")
    if not path.is_file():
        raise ApiError(f"This job has no checkpoint at step {step} (only the last `keep_last` are kept).", 404)
    return path


def published_checkpoint(workspace: Workspace, job: Job, step: int) -> str | None:
    """The library's link to a checkpoint's LoRA, when it was added there (publish_checkpoint). Asked on
    every job update, so by the file's identity only: another job's file of the same name and size is
    never read through (a copy made where the disk cannot link is not recognised; adding it again is
    harmless)."""
    source = workspace.jobs / job.id / "checkpoints" / f"step_{step:06d}" / "lora.safetensors"
    for name in (checkpoint_name(job, step), f"{Path(checkpoint_name(job, step)).stem}-{job.id}.safetensors"):
        if same_file(workspace.loras / name, source):
            return name
    return None


def publish_checkpoint(workspace: Workspace, job: Job, step: int) -> tuple[str, list[Path]]:
    """Put a checkpoint's LoRA into the library (and ComfyUI's loras) as <name>-step<N>.safetensors, or
    <name>-step<N>-<job id>.safetensors when another file has that name. Returns the name and the paths."""
    source = checkpoint_file(workspace, job, step)
    name = checkpoint_name(job, step)
    if (workspace.loras / name).exists() and not same_bytes(workspace.loras / name, source):
        name = f"{Path(name).stem}-{job.id}.safetensors"
    return name, publish(workspace, job, source, own=name)


def remove_job_files(workspace: Workspace, job_id: str) -> None:
    folder = workspace.job_dir(job_id)
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("could not remove all of %s: %s", folder, exc)


NO_TRIGGER_SUFFIX = "_notrigger"  # trainer.engine.sampling writes <i>.png (LoRA on) and <i>_notrigger.png
PROOF_FILES = {"grid": "proof_grid.png", "readme": "README.txt",  # trainer.engine.proof, in lora/
               "workflow": "comfyui_workflow.json"}


def samples(job_dir: Path) -> list[dict]:
    """Sample images per step, oldest first: {step, images: [LoRA-on image paths], prompts: [text],
    pairs: [{index, prompt, seed, no_trigger_prompt, base, lora, lora_no_trigger, leak, options}]} with paths relative
    to the job folder (None where an image does not exist: no trigger word, or an older job). The base
    model's renders, when there are any, come first as step 0 with `base_only`."""
    out = []
    base = _base_index(job_dir / "samples" / "base")
    if base:  # rendered before the first step: "before training", shown until (and beside) the preview steps
        order = sorted(base)
        out.append({"step": 0, "base_only": True, "images": [f"samples/base/{i}.png" for i in order],
                    "prompts": [base[i].get("prompt", "") for i in order],
                    "pairs": [{"index": i, "prompt": base[i].get("prompt", ""), "seed": base[i].get("seed"),
                               "no_trigger_prompt": None, "base": f"samples/base/{i}.png", "lora": None,
                               "lora_no_trigger": None, "options": _options(base[i])} for i in order]})
    for step, folder in step_dirs(job_dir / "samples"):
        images = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                         and not p.stem.endswith(NO_TRIGGER_SUFFIX)), key=lambda p: (len(p.stem), p.stem))
        if not images:
            continue
        entries = _prompt_entries(folder / "prompts.json")
        prompts = [e.get("prompt", "") for e in entries]
        out.append({"step": step, "images": [f"samples/{folder.name}/{p.name}" for p in images], "prompts": prompts,
                    "pairs": _pairs(folder, images, entries, base)})
    return out


def leak_summary(groups: list[dict]) -> dict | None:
    """Of `samples` groups: the mean share of the LoRA's change the last preview step keeps without the trigger
    word ({"share", "step", "leaks"}, trainer.leak), None when it was not measured."""
    last = next((group for group in reversed(groups) if not group.get("base_only")), None)
    share = mean_share(last["pairs"]) if last else None
    return None if share is None else {"share": share, "step": last["step"], "leaks": share >= LEAKS}


def samples_at(job: Job, job_dir: Path, step: int) -> dict | None:
    """A checkpoint's card: the preview step's group of `samples` at its step, pairs as URLs (None when no preview
    was rendered at that step)."""
    group = next((g for g in samples(job_dir) if g["step"] == step and not g.get("base_only")), None)
    if group:
        group["pairs"] = pair_urls(job.id, group["pairs"])
        group["urls"] = [file_url(job.id, image) for image in group["images"]]
    return group


def last_samples(job_dir: Path) -> dict | None:
    """The last preview step's group of `samples` (None when no preview step was rendered)."""
    return next((group for group in reversed(samples(job_dir)) if not group.get("base_only")), None)


def _prompt_entries(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    if isinstance(data, dict):
        data = data.get("prompts", [])
    if not isinstance(data, list):
        return []
    return [p if isinstance(p, dict) else {"prompt": str(p)} for p in data]


def _base_index(folder: Path) -> dict[int, dict]:
    """samples/base/prompts.json: the cached LoRA-off renders, by prompt index."""
    found = {}
    for entry in _prompt_entries(folder / "prompts.json"):
        try:
            index = int(entry["index"])
        except (KeyError, TypeError, ValueError):
            continue
        if (folder / f"{index}.png").is_file():
            found[index] = entry
    return found


def _pairs(folder: Path, images: list[Path], entries: list[dict], base: dict[int, dict]) -> list[dict]:
    def rel(name: str | None) -> str | None:
        return f"samples/{folder.name}/{name}" if name and (folder / name).is_file() else None

    pairs = []
    for index, image in enumerate(images):
        entry = entries[index] if index < len(entries) else {}
        cached = base.get(index)
        share = entry.get("leak") if isinstance(entry.get("leak"), int | float) else None
        # a base render belongs to this step only if it was made for the same prompt, seed and settings
        matches = cached is not None and entry.get("base_key") and cached.get("key") == entry.get("base_key")
        pairs.append({"index": index, "prompt": str(entry.get("prompt", "")), "seed": entry.get("seed"),
                      "no_trigger_prompt": entry.get("no_trigger_prompt"),
                      "base": f"samples/base/{index}.png" if matches else None,
                      "base_key": entry.get("base_key") if matches else None,  # runs with the same one share it
                      "lora": f"samples/{folder.name}/{image.name}",
                      "lora_no_trigger": rel(entry.get("lora_no_trigger")),
                      # the share of the LoRA's change that remains without the trigger word (trainer.leak)
                      "leak": share, "leaks": share is not None and share >= LEAKS,
                      # the prompt's own size, seed, steps, ... (trainer.preview_prompts), where it has any
                      "options": _options(entry)})
    return pairs


def _options(entry: dict) -> dict | None:
    return entry.get("options") if isinstance(entry.get("options"), dict) else None


def pair_urls(job_id: str, pairs: list[dict], base: str | None = None) -> list[dict]:
    """The same pairs with each image path turned into its file URL (see file_url)."""
    keys = ("base", "lora", "lora_no_trigger")
    return [{**p, **{k: file_url(job_id, p[k], base) if p.get(k) else None for k in keys}} for p in pairs]


def file_url(job_id: str, relative: str, base: str | None = None) -> str:
    """The trainer's /api/jobs/<id>/files/ URL of a job file, or the same file under another service's
    `base` (the dataset manager serves an express run's files on its own origin)."""
    return f"{base or f'/api/jobs/{job_id}'}/files/{relative}"


def proof(job_dir: Path) -> dict | None:
    """{grid, readme}: the finished job's proof files beside its LoRA (paths relative to the job folder)."""
    found = {key: f"lora/{name}" if (job_dir / "lora" / name).is_file() else None for key, name in PROOF_FILES.items()}
    return found if any(found.values()) else None


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
    last = last_samples(job_dir)
    if last:  # the final base/LoRA pairs, ready to show (none when every preview step was skipped)
        last["pairs"] = pair_urls(job.id, last["pairs"])
    found = proof(job_dir)
    return {
        "job_id": job.id, "name": job.name, "file": lora.name, "path": relative, "size": lora.stat().st_size,
        "dataset": job.dataset_label, "recipe": job.recipe, "finished_at": job.finished_at,
        "steps": (job.result or {}).get("steps") or job.step,  # of the LoRA: a longer run may be on its way
        "loss": _smoothed_loss(job), "metadata": shown(safetensors_metadata(lora)),
        "samples": last,
        "leak": leak_summary([last]) if last else None,  # its final previews without the trigger word
        "trigger_word": job.config.get("trigger_word"),
        "proof": {k: file_url(job.id, v) if v else None for k, v in found.items()} if found else None,
    }


def _smoothed_loss(job: Job) -> float | None:
    """The figure the dashboard and the job page show: the smoothed loss, else the last step's."""
    smooth = job.details.get("smooth_loss")
    return smooth if isinstance(smooth, int | float) else job.loss
