"""Deep validation of a job request before any GPU time is spent.

Checks the request's shape, the recipe config (field by field), the exported dataset (exists, readable,
image count and sizes, captions), the model files, and estimates duration and GPU memory for this machine.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from studio.disk import free_bytes
from studio.model_status import download_state, format_bytes, waiting_for, worth_waiting
from studio.registry import model_paths
from studio.settings import Settings
from studio.text import shown_name
from studio.workspace import Workspace, confined
from trainer.dataset_checks import check_datasets, requested
from trainer.lokr_layout import DEFAULT_FACTOR
from trainer.lora_file import LoraFileError, check_start_lora

log = logging.getLogger(__name__)
WEBHOOK_URL_MAX = 2048
# What a training job needs downloaded (models.txt keys and what people call them)
TRAINING_MODELS = (("zimage", "Z-Image-Turbo model"), ("adapter", "Z-Image training adapter"))
REQUEST_KEYS = {"name", "recipe", "dataset", "dataset_version", "datasets", "config", "webhook_url", "webhook_from",
                "idempotency_key"}


@dataclass
class Report:
    ok: bool = True
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    estimated_duration_s: float | None = None
    estimated_memory_gb: float | None = None
    estimated_disk_gb: float | None = None  # the most the job holds on disk at once
    estimate_device: str | None = None  # "gpu", "cpu" or "demo": what kind of guess the estimate is
    suggested_steps: int | None = None  # what the recipe's step rule gives for this many images
    device: str = "cpu"
    images: int = 0
    datasets: list[dict] = field(default_factory=list)  # [{"name", "images", "repeats"}] as checked
    config: dict | None = None
    name: str | None = None

    def error(self, field_name: str, message: str) -> None:
        self.ok = False
        self.errors.append({"field": field_name, "message": message})

    def warn(self, field_name: str | None, message: str) -> None:
        self.warnings.append({"field": field_name, "message": message})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float


_gpu_cache: dict[str, Gpu | None] = {}
_gpu_lock = threading.Lock()


def detect_gpu() -> Gpu | None:
    """The first NVIDIA GPU (asked once through nvidia-smi: no CUDA import in the web process)."""
    with _gpu_lock:
        if "gpu" not in _gpu_cache:
            _gpu_cache["gpu"] = _query_gpu()
        return _gpu_cache["gpu"]


def _nvidia_smi(fields: str) -> list[str] | None:
    """The first GPU's values for `fields` (comma-separated nvidia-smi query names); None with no GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return [value.strip() for value in out.strip().splitlines()[0].rsplit(",", fields.count(","))]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        log.info("no GPU found through nvidia-smi: %s", exc)
        return None


def _query_gpu() -> Gpu | None:
    values = _nvidia_smi("name,memory.total")
    try:
        return Gpu(values[0], float(values[1]) / 1024) if values else None
    except (ValueError, IndexError):
        return None


def free_gpu_memory_gb() -> float | None:
    """GPU memory free right now (not cached: it changes as programs load and unload models)."""
    values = _nvidia_smi("memory.free")
    try:
        return float(values[0]) / 1024 if values else None
    except (ValueError, IndexError):
        return None


def _check_request(payload: dict, report: Report) -> None:
    for key in sorted(set(payload) - REQUEST_KEYS):
        report.error(key, f"Unknown field {key!r}; a job has name, recipe, dataset (and optionally dataset_version) "
                          "or datasets, config and webhook_url.")
    name = payload.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 120):
        report.error("job_name", "The job name must be text of at most 120 characters.")
    elif name and not shown_name(name):
        report.error("job_name", "The job name shows nothing (only invisible characters): type a name, or leave it "
                                 "empty to name the job after its LoRA.")
    if not isinstance(payload.get("config", {}), dict):
        report.error("config", "The config must be a JSON object of recipe settings.")
    source = payload.get("webhook_from")  # a job whose webhook this one uses too (a copy: its token never shown)
    if source is not None and not isinstance(source, str):
        report.error("webhook_from", "webhook_from must be the id of a job whose webhook this job uses too.")
    url = payload.get("webhook_url")
    if url not in (None, ""):
        parsed = urlparse(url) if isinstance(url, str) else None
        if isinstance(url, str) and len(url) > WEBHOOK_URL_MAX:  # kept in every job row and shown on its page
            report.error("webhook_url", f"The webhook URL is {len(url):,} characters long; a webhook's address is at "
                                        f"most {WEBHOOK_URL_MAX:,}: paste the address alone.")
        elif parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            report.error("webhook_url", "The webhook URL must start with http:// or https://.")
        elif not _port_fits(parsed):
            report.error("webhook_url", "The webhook URL's port is not a port (1 to 65535): check the number after "
                                        "the host's colon.")


def _port_fits(parsed) -> bool:
    try:
        return parsed.port is None or parsed.port > 0
    except ValueError:  # out of range, or not a number
        return False


def _check_webhook_address(settings: Settings, url, report: Report) -> None:
    """A job's own webhook goes to a public address (trainer.webhooks): one that points at the pod or its network
    is refused now, not left to fail silently at the job's first news."""
    if not isinstance(url, str) or not url or url == settings.webhook_url or settings.allow_private_urls:
        return
    if urlparse(url).scheme not in ("http", "https") or not _port_fits(urlparse(url)):
        return  # _check_request said so
    from app.link_fetch import BlockedAddress, checked_address
    from studio.jobs import JobError

    try:
        checked_address(url, allow_private=False)
    except BlockedAddress as exc:
        report.error("webhook_url", f"The webhook URL points at a private or local address ({exc.address}): the pod "
                                    "does not send a job's news to itself or its own network. Use a public address, "
                                    "or set ALLOW_PRIVATE_URLS=1 to allow your own network.")
    except (JobError, ValueError):
        report.warn("webhook_url", f"{urlparse(url).hostname} could not be found (DNS) just now: check the webhook "
                                   "URL. Each message is tried again a few times.")


def _check_config(payload: dict, report: Report):
    from trainer.recipes import ConfigError, get_recipe

    try:
        recipe = get_recipe(payload.get("recipe") or "zimage-turbo")
    except ConfigError as exc:
        for item in exc.errors:
            report.error("recipe", item["message"])
        return None
    config = dict(payload["config"]) if isinstance(payload.get("config"), dict) else {}
    job_name = payload.get("name")
    if "name" not in config and isinstance(job_name, str) and any(f["name"] == "name" for f in recipe.form_fields()):
        # an API client that names the job but not the LoRA gets a LoRA file named after the job
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-._")[:80]
        if slug:
            config["name"] = slug
    try:
        parsed = recipe.config_from_dict(config)
    except ConfigError as exc:
        for item in exc.errors:
            report.error(item.get("field") or "config", item.get("message") or str(exc))
        return None
    report.config = parsed.to_dict()
    for note in parsed.advice():
        report.warn(note["field"], note["message"])
    return parsed


def _check_name(workspace: Workspace, config: dict | None, report: Report) -> None:
    """A LoRA name already in the library: the new file would be kept beside it as <name>-<job id>."""
    name = (config or {}).get("name")
    if not isinstance(name, str) or not (workspace.loras / f"{name}.safetensors").exists():
        return
    from trainer.names import unique_name

    taken = {path.stem.lower() for path in workspace.loras.glob("*.safetensors")}
    report.warn("name", f"A LoRA named {name!r} is already in the library: this job's file will be kept there as "
                        f"{name}-<job id>.safetensors. {unique_name(name, taken)!r} is free.")


def _check_start_lora(workspace: Workspace, config: dict | None, report: Report) -> None:
    """A LoRA to start from: in the library, and of this job's rank and layers."""
    name = (config or {}).get("init_lora")
    if not name:
        return
    path = confined(workspace.loras, f"{name}.safetensors")
    if not path.is_file():
        report.error("init_lora", f"There is no LoRA named {name!r} in the LoRA library: pick one of its names "
                                  "(a .safetensors file put into trainer/loras counts too).")
        return
    try:
        check_start_lora(path, config["rank"], config.get("lora_targets") or "all",
                         network=config.get("network", "lora"), factor=config.get("lokr_factor", DEFAULT_FACTOR))
    except LoraFileError as exc:
        report.error("init_lora", str(exc))


def _missing_models(settings: Settings) -> list[tuple[Path, str, str]]:
    """(file, label, key) of each model a training job needs that is not on disk."""
    paths = model_paths(settings)
    files = {"zimage": paths.zimage_dir / "model_index.json", "adapter": paths.training_adapter}
    return [(files[key], label, key) for key, label in TRAINING_MODELS if not files[key].is_file()]


def models_download_wait(settings: Settings) -> str | None:
    """While a model training needs is missing and still downloading: what a queued job waits for."""
    if settings.demo:  # the job builds the tiny models itself
        return None
    return waiting_for(settings, [(key, label) for _, label, key in _missing_models(settings)])


def models_download_left_s(settings: Settings) -> float | None:
    """Seconds until the models a queued job waits for are downloaded: 0 when it waits for none, None while
    one has no ETA yet."""
    if models_download_wait(settings) is None:
        return 0.0
    left = [download_state(settings, key) for _, _, key in _missing_models(settings)]
    etas = [state.get("eta_s") for state in left if worth_waiting(state)]
    if not etas or not all(isinstance(eta, int | float) for eta in etas):
        return None
    return float(max(etas))


def _check_models(settings: Settings, report: Report) -> None:
    missing = _missing_models(settings)
    if not missing:
        return
    if settings.demo:
        report.warn(None, "The tiny demo models are built when the job starts (a few seconds).")
        return
    for path, label, key in missing:
        state = download_state(settings, key)
        if worth_waiting(state):
            report.warn("model", f"The {label} is {state['message']}: the job waits in the queue and starts by "
                                 "itself when the download is done.")
        elif state is not None:
            report.error("model", f"The {label} is not on disk ({state['message']}): the banner above says what to "
                                  "do; start the job when it is there.")
        else:
            report.error("model", f"The {label} is not on disk yet ({path} is missing): wait for the model "
                                  "download (listed in models.txt) to finish.")


def _check_disk(settings: Settings, needed_gb: float, report: Report) -> None:
    """A job that cannot fit its checkpoints would fail when the disk fills, maybe hours in: say so first."""
    free = free_bytes(settings.root)
    if free is None or needed_gb * 1e9 <= free:
        return
    report.warn("keep_last", f"This job writes up to about {format_bytes(needed_gb * 1e9)} (its checkpoints, the "
                             f"LoRA, the previews), but {settings.root} has {format_bytes(free)} free: it would stop "
                             "when the disk fills. Free space (old jobs and their checkpoints, export versions no job "
                             "needs, Recently deleted) or keep fewer checkpoints.")


def validate(settings: Settings, payload: dict) -> Report:
    """The full check; `report.ok` is False when any error was found."""
    report = Report()
    _check_request(payload, report)
    _check_webhook_address(settings, payload.get("webhook_url"), report)
    parsed = _check_config(payload, report)
    config = report.config
    workspace = Workspace(settings.root)
    sources = requested(payload, report)
    checked = check_datasets(workspace, sources, config, report)
    report.datasets = [{"name": c.name, "images": c.images, "repeats": c.repeats} for c in checked]
    sizes = [size for c in checked for size in c.sizes or [] for _ in range(c.repeats)]  # as often as trained
    _check_name(workspace, config, report)
    _check_start_lora(workspace, config, report)
    _check_models(settings, report)
    gpu = detect_gpu()
    report.device = f"{gpu.name} ({gpu.memory_gb:.0f} GB)" if gpu else "CPU"
    job_name = payload.get("name")
    report.name = ((shown_name(job_name) if isinstance(job_name, str) else None) or (config or {}).get("name")
                   or (sources[0]["name"] if sources else "") or "job")
    if parsed is not None:
        from trainer.recipes import get_recipe

        recipe = get_recipe(payload.get("recipe") or "zimage-turbo")
        guess = recipe.estimate(parsed, report.images, gpu.name if gpu else None, settings.demo, sizes)
        memory = guess.memory_gb
        report.estimated_duration_s, report.estimated_memory_gb = guess.seconds, memory
        report.estimate_device = guess.device
        if report.images:
            report.suggested_steps = recipe.suggested_steps(report.images)
        if gpu and memory > gpu.memory_gb * 0.95:
            report.warn("quantize_base", f"This config needs about {memory:.0f} GB but the GPU has "
                                         f"{gpu.memory_gb:.0f} GB: pick a smaller memory preset.")
        if gpu is None and not settings.demo:
            report.warn(None, "No GPU found: training the full model on the CPU would take days.")
        report.estimated_disk_gb = guess.disk_gb
        _check_disk(settings, guess.disk_gb, report)
    return report
