"""Try a LoRA: one prompt rendered with one seed at several LoRA strengths, side by side, from one LoRA
file or several (a job's checkpoints, to see which step is best).

Strength 0 is the base model, rendered once; the others add each LoRA file that many times to each
module's output (hooks, so one loaded transformer serves every file and strength and its weights never
change). Rendered as ComfyUI renders a Z-Image-Turbo LoRA: no training adapter, the job's preview steps
and guidance.

A `RenderSession` keeps the models between renders, so the next prompt starts at once instead of loading
some 20 GB again. The text encoder is loaded first, and parked in the host's memory once the prompt is
encoded, so the GPU peak is the transformer's. A later prompt brings the encoder back to the GPU beside
the transformer when there is room, else the transformer is let go while it encodes and loaded again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.engine import model as zmodel
from trainer.engine.cache import free_memory
from trainer.engine.errors import is_oom
from trainer.engine.sampling import Sampler, save_png
from trainer.engine.speed_setup import quantize
from trainer.preview_prompts import PreviewPrompt

GPU_MARGIN = 1.5 * 2**30  # activations of one encoding, beside the encoder's weights
HOST_MARGIN = 2 * 2**30  # host memory left to everything else after parking the encoder
MAX_EMBEDDINGS = 64


@dataclass(frozen=True)
class TryRequest:
    prompt: str
    strengths: tuple[float, ...]
    seed: int
    width: int
    height: int
    steps: int
    guidance_scale: float
    quantize_base: str = "none"  # the training job's memory setting, so what trained on a card renders on it
    float8_matmuls: bool = False

    @property
    def preview(self) -> PreviewPrompt:
        """The picture to render, as the training previews describe one (the LoRA's strength is set apart)."""
        return PreviewPrompt(self.prompt, self.width, self.height, self.seed, self.steps, self.guidance_scale)

    @property
    def memory_key(self) -> tuple[str, bool]:
        """Renders with the same key can share one loaded transformer."""
        return self.quantize_base, self.float8_matmuls


def image_name(index: int) -> str:
    return f"{index}.png"


def module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def host_available() -> int:
    """Bytes this process may still take from the host: MemAvailable, capped by a cgroup limit."""
    available = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available or 2**62, int(limit) - used)
    return available if available is not None else 0


class RenderSession:
    """The models of "Try the LoRA", loaded on the first render and kept for the next ones with the same
    memory key (`fits`). `close` lets go of every model (the prompts' small embeddings stay)."""

    def __init__(self, paths, device: str | None = None, log: Callable[[str], None] = print,
                 gpu_free: Callable[[torch.device], int] | None = None):
        self.paths, self.log = paths, log
        self.dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.bfloat16 if self.dev.type == "cuda" else torch.float32
        self._gpu_free = gpu_free or (lambda dev: torch.cuda.mem_get_info(dev)[0])
        self.key: tuple[str, bool] | None = None
        self.tokenizer = self.encoder = self.transformer = self.sampler = None
        self.embeddings: dict[str, torch.Tensor] = {}
        self.loads = {"text_encoder": 0, "transformer": 0}  # how often each was read from disk

    def fits(self, request: TryRequest) -> bool:
        return self.transformer is None or self.key == request.memory_key

    def render(self, request: TryRequest, lora_paths: list[Path], out_dir: Path,
               on_progress: Callable[[dict], None] | None = None, labels: list[str] | None = None,
               stack: list[tuple[Path, float, str]] = ()) -> list[dict]:
        """Render `request` into out_dir/<i>.png, each written whole: the base model once (strength 0),
        then every other strength for each LoRA file in turn (`labels` name them in messages); the LoRAs of
        `stack` (file, strength, label) apply to every image, the base model's too. Returns one entry per
        image: {strength, lora (the file's index in lora_paths, None for the base), file, seconds}."""
        if not self.fits(request):
            self.close()
        report = on_progress or (lambda _values: None)
        plan = [(None, 0.0)] if 0 in request.strengths else []
        plan += [(index, s) for index in range(len(lora_paths)) for s in request.strengths if s != 0]
        total = len(plan)
        out_dir.mkdir(parents=True, exist_ok=True)
        loras = [zmodel.load_adapter_file(path, f"The LoRA file {path.parent.name}/{path.name}")
                 for path in lora_paths]
        together = [(zmodel.load_adapter_file(path, f"The LoRA file {path.name}"), strength, label)
                    for path, strength, label in stack]
        zmodel.check_model_files(self.paths, adapter=False)
        self._embed([request.prompt] + ([""] if request.guidance_scale > 0 else []), report, total)
        self._load_transformer(request, report, total)
        for lora in loras + [delta for delta, _strength, _label in together]:  # another model's: before rendering
            zmodel.check_fits(self.transformer, lora)
        with contextlib.ExitStack() as applied_to_all:
            for delta, strength, label in together:
                applied_to_all.enter_context(zmodel.adapter_applied(self.transformer, delta, strength))
                self.log(f"Every image with {label} at {strength:g}.")
            return self._render_plan(request, plan, loras, lora_paths, out_dir, report, labels)

    def _render_plan(self, request: TryRequest, plan: list, loras: list, lora_paths: list[Path], out_dir: Path,
                     report: Callable[[dict], None], labels: list[str] | None) -> list[dict]:
        total = len(plan)
        images = []
        for index, (which, strength) in enumerate(plan):
            label = "base model" if which is None else f"LoRA at {strength:g}"
            if which is not None and len(loras) > 1:
                label += f", {labels[which] if labels else lora_paths[which].parent.name}"
            report({"phase": "rendering", "done": index, "total": total, "picture_step": 0,
                    "picture_steps": request.preview.steps, "message": f"Rendering {index + 1} of {total}: {label}"})
            started = time.monotonic()
            applied = zmodel.adapter_applied(self.transformer, loras[which], strength) if which is not None \
                else contextlib.nullcontext()

            def on_step(step: int, steps: int, index: int = index) -> None:  # a picture at 2048 px takes a while
                report({"phase": "rendering", "done": index, "total": total, "picture_step": step,
                        "picture_steps": steps})

            with applied:
                image = self._render_one(request, on_step)
            save_png(image, out_dir / image_name(index))
            seconds = round(time.monotonic() - started, 2)
            images.append({"strength": strength, "lora": which, "file": image_name(index), "seconds": seconds})
            self.log(f"Rendered {label} in {seconds:.1f} s.")
            report({"phase": "rendering", "done": index + 1, "total": total, "images": images})
        return images

    def close(self) -> None:
        self.tokenizer = self.encoder = self.transformer = self.sampler = None
        self.key = None
        free_memory(self.dev)

    # -- the models ----------------------------------------------------------------------------
    def _embed(self, texts: list[str], report, total: int) -> None:
        missing = [text for text in texts if text not in self.embeddings]
        if not missing:
            return
        report({"phase": "loading", "done": 0, "total": total, "message": "Encoding the prompt"})
        if self.encoder is not None and not self._room_on_gpu(module_bytes(self.encoder)):
            self._let_go_of_transformer()
        if self.encoder is None:
            if self.transformer is not None and self.dev.type == "cuda":
                self._let_go_of_transformer()  # its size is not known before loading: no guessing
            self.tokenizer, self.encoder = zmodel.load_text_encoder(self.paths, self.dev, self.dtype)
            self.loads["text_encoder"] += 1
        else:
            self.encoder.to(self.dev)
        for text, embedding in zip(missing, zmodel.encode_prompts(self.tokenizer, self.encoder, missing), strict=True):
            self.embeddings[text] = embedding.to("cpu")
        while len(self.embeddings) > MAX_EMBEDDINGS:
            self.embeddings.pop(next(iter(self.embeddings)))
        self._park_encoder()

    def _park_encoder(self) -> None:
        """Keep the encoder in host memory for the next prompt when there is room, else let it go."""
        if self.dev.type != "cuda":
            return  # it already lives in host memory
        if host_available() > module_bytes(self.encoder) + HOST_MARGIN:
            self.encoder.to("cpu")
        else:
            self.tokenizer = self.encoder = None
            self.log("Not enough host memory to keep the text encoder; the next new prompt loads it again.")
        free_memory(self.dev)

    def _room_on_gpu(self, size: int) -> bool:
        return self.dev.type != "cuda" or self.transformer is None or self._gpu_free(self.dev) > size + GPU_MARGIN

    def _let_go_of_transformer(self) -> None:
        self.log("The transformer is let go while the prompt is encoded (not enough GPU memory for both).")
        self.transformer = self.sampler = None
        free_memory(self.dev)

    def _load_transformer(self, request: TryRequest, report, total: int) -> None:
        if self.transformer is not None:
            return
        report({"phase": "loading", "done": 0, "total": total, "message": "Loading the transformer"})
        self.transformer = zmodel.load_transformer(self.paths, self.dev, self.dtype)
        self.loads["transformer"] += 1
        quantize(request, self.transformer, self.dev, self.dtype, self.log, check_errors=False)
        self.key = request.memory_key
        self.sampler = Sampler(None, self.paths, self.dev, self.embeddings, None,
                               torch.bfloat16 if self.dev.type == "cuda" else None)

    def _render_one(self, request: TryRequest, on_step: Callable[[int, int], None] | None = None):
        """Out of memory (the VAE's peak at a large size is several GB): once more with the VAE decoding
        in tiles, which is what the rest of the session then uses."""
        while True:
            try:
                return self.sampler.render_image(self.transformer, request.preview, "try", on_step)
            except Exception as exc:
                if not is_oom(exc) or not self.sampler.lighten():
                    raise
            free_memory(self.dev)
            self.log("Out of memory while rendering; the VAE decodes in tiles from now on and the image is "
                     "rendered again.")


def render(request: TryRequest, lora_paths: list[Path], paths, out_dir: Path, device: str | None = None,
           on_progress: Callable[[dict], None] | None = None, log: Callable[[str], None] = print,
           labels: list[str] | None = None, stack: list[tuple[Path, float, str]] = ()) -> list[dict]:
    """One render in a session of its own: load, render, give the memory back."""
    session = RenderSession(paths, device, log)
    try:
        return session.render(request, lora_paths, out_dir, on_progress, labels, stack)
    finally:
        session.close()
