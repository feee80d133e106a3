"""One typed settings object, read from the environment, with a default for everything.

An invalid value stops a service at start with one clear sentence (`SettingsError`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message is one sentence for the user."""


def _env(environ, name: str, default: str | None = None) -> str | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _port(environ, name: str, default: int) -> int:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a port number: use a whole number from 1 to 65535.") from None
    if not 1 <= port <= 65535:
        raise SettingsError(f"{name}={raw!r} is out of range: use a whole number from 1 to 65535.")
    return port


def _int(environ, name: str, default: int, minimum: int = 0) -> int:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} is too small: use {minimum} or more.")
    return value


def _float(environ, name: str, default: float, minimum: float = 0.0) -> float:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} is too small: use {minimum} or more.")
    return value


def _bool(environ, name: str, default: bool) -> bool:
    raw = _env(environ, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a yes/no value: use 1 or 0.")


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
        return True
    except OSError:
        return False


def resolve_root(environ=None) -> Path:
    """`STUDIO_ROOT`, else `/workspace` when it exists and is writable, else `./workspace`."""
    environ = os.environ if environ is None else environ
    raw = _env(environ, "STUDIO_ROOT")
    if raw is not None:
        root = Path(raw).expanduser().resolve()
        if not _writable_dir(root):
            raise SettingsError(
                f"STUDIO_ROOT={raw!r} cannot be created or written: point it at a writable folder."
            )
        return root
    workspace = Path("/workspace")
    if workspace.is_dir() and os.access(workspace, os.W_OK):
        return workspace
    root = Path.cwd().joinpath("workspace").resolve()
    if not _writable_dir(root):
        raise SettingsError(f"{root} cannot be created or written: set STUDIO_ROOT to a writable folder.")
    return root


@dataclass(frozen=True)
class Settings:
    # everything the user owns lives under root
    root: Path
    # ports and addresses
    host: str = "0.0.0.0"
    port: int = 3000
    qwen_host: str = "127.0.0.1"
    qwen_port: int = 11435
    trainer_port: int = 8675
    caption_url: str = ""
    # auth
    password: str | None = None
    # models
    demo: bool = False
    dev_model_path: Path | None = None
    dev_mmproj_path: Path | None = None
    hf_token: str | None = field(default=None, repr=False)
    hf_endpoint: str | None = None
    civitai_token: str | None = field(default=None, repr=False)
    civitai_url: str = "https://civitai.com"
    # dataset manager
    max_upload_mb: int = 20480
    upload_chunk_mb: int = 32
    max_image_pixels: int = 80_000_000
    zip_max_total_mb: int = 20480
    zip_max_ratio: int = 200
    video_max_frames: int = 60
    video_frame_seconds: float = 2.0
    allow_private_urls: bool = False
    # caption service
    caption_idle_unload_s: float = 600.0
    caption_max_pixels: int = 1_048_576
    caption_max_image_tokens: int = 1024
    caption_queue_size: int = 8
    caption_timeout_s: float = 120.0
    caption_n_gpu_layers: int = -1
    # trainer
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)  # every job's, unless the job names its own
    stop_pod_when_idle: bool = False
    runpod_pod_id: str | None = None
    runpod_api_key: str | None = field(default=None, repr=False)
    runpod_api_url: str = "https://rest.runpod.io/v1"
    gpu_price_per_hour: float = 0.0  # 0: read the pod's price from RunPod, or show none
    render_keep_warm_s: float = 180.0
    gpu_workers: int = 0  # training workers: 0 = one per GPU (studio.gpus)
    # object storage (S3, R2, MinIO)
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_region: str = "auto"
    s3_output_prefix: str | None = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.password)

    def public_dict(self) -> dict:
        """Settings safe to show (no secrets)."""
        hidden = {"password", "hf_token", "civitai_token", "webhook_secret", "webhook_url", "runpod_api_key",
                  "s3_access_key", "s3_secret_key"}
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in hidden:
                value = bool(value)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def _link(environ, name: str) -> str | None:
    raw = _env(environ, name)
    if raw and not raw.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http:// or https:// link, not {raw[:40]!r}.")
    return raw


def _optional_path(environ, name: str) -> Path | None:
    raw = _env(environ, name)
    return Path(raw).expanduser() if raw else None


def load_settings(environ=None) -> Settings:
    """Read every setting from the environment (or a mapping, for tests)."""
    environ = os.environ if environ is None else environ
    qwen_host = _env(environ, "QWEN_HOST", "127.0.0.1")
    qwen_port = _port(environ, "QWEN_PORT", 11435)
    connect_host = "127.0.0.1" if qwen_host in {"0.0.0.0", "::"} else qwen_host
    return Settings(
        root=resolve_root(environ),
        host=_env(environ, "HOST", "0.0.0.0"),
        port=_port(environ, "PORT", 3000),
        qwen_host=qwen_host,
        qwen_port=qwen_port,
        trainer_port=_port(environ, "TRAINER_PORT", 8675),
        caption_url=_env(environ, "CAPTION_URL", f"http://{connect_host}:{qwen_port}").rstrip("/"),
        password=_env(environ, "STUDIO_PASSWORD"),
        demo=_bool(environ, "STUDIO_DEMO", False),
        dev_model_path=_optional_path(environ, "DEV_MODEL_PATH"),
        dev_mmproj_path=_optional_path(environ, "DEV_MMPROJ_PATH"),
        hf_token=_env(environ, "HF_TOKEN"),
        hf_endpoint=_env(environ, "HF_ENDPOINT"),
        civitai_token=_env(environ, "CIVITAI_TOKEN"),
        civitai_url=_env(environ, "CIVITAI_URL", "https://civitai.com").rstrip("/"),
        max_upload_mb=_int(environ, "MAX_UPLOAD_MB", 20480, minimum=1),
        upload_chunk_mb=_int(environ, "UPLOAD_CHUNK_MB", 32, minimum=1),
        max_image_pixels=_int(environ, "MAX_IMAGE_PIXELS", 80_000_000, minimum=1),
        zip_max_total_mb=_int(environ, "ZIP_MAX_TOTAL_MB", 20480, minimum=1),
        zip_max_ratio=_int(environ, "ZIP_MAX_RATIO", 200, minimum=1),
        video_max_frames=_int(environ, "VIDEO_MAX_FRAMES", 60, minimum=1),
        video_frame_seconds=_float(environ, "VIDEO_FRAME_SECONDS", 2.0, minimum=0.1),
        allow_private_urls=_bool(environ, "ALLOW_PRIVATE_URLS", False),
        caption_idle_unload_s=_float(environ, "CAPTION_IDLE_UNLOAD_S", 600.0),
        caption_max_pixels=_int(environ, "CAPTION_MAX_PIXELS", 1_048_576, minimum=784),
        caption_max_image_tokens=_int(environ, "CAPTION_MAX_IMAGE_TOKENS", 1024, minimum=8),
        caption_queue_size=_int(environ, "CAPTION_QUEUE_SIZE", 8, minimum=1),
        caption_timeout_s=_float(environ, "CAPTION_TIMEOUT_S", 120.0, minimum=1.0),
        caption_n_gpu_layers=_int(environ, "CAPTION_GPU_LAYERS", -1, minimum=-1),
        webhook_secret=_env(environ, "WEBHOOK_SECRET"),
        webhook_url=_link(environ, "WEBHOOK_URL"),
        stop_pod_when_idle=_bool(environ, "STOP_POD_WHEN_IDLE", False),
        runpod_pod_id=_env(environ, "RUNPOD_POD_ID"),
        runpod_api_key=_env(environ, "RUNPOD_API_KEY"),
        runpod_api_url=_env(environ, "RUNPOD_API_URL", "https://rest.runpod.io/v1").rstrip("/"),
        gpu_price_per_hour=_float(environ, "GPU_PRICE_PER_HOUR", 0.0),
        render_keep_warm_s=_float(environ, "RENDER_KEEP_WARM_S", 180.0),
        gpu_workers=_int(environ, "GPU_WORKERS", 0, minimum=0),
        s3_endpoint=_env(environ, "S3_ENDPOINT_URL", _env(environ, "R2_ENDPOINT_URL")),
        s3_bucket=_env(environ, "S3_BUCKET", _env(environ, "R2_BUCKET")),
        s3_access_key=_env(environ, "S3_ACCESS_KEY_ID", _env(environ, "R2_ACCESS_KEY_ID")),
        s3_secret_key=_env(environ, "S3_SECRET_ACCESS_KEY", _env(environ, "R2_SECRET_ACCESS_KEY")),
        s3_region=_env(environ, "S3_REGION", "auto"),
        s3_output_prefix=_env(environ, "S3_OUTPUT_PREFIX", _env(environ, "R2_OUTPUT_PREFIX")),
    )


# Every environment variable the studio reads, with its meaning: the README table is checked against it.
ENV_VARS = {
    "STUDIO_ROOT": "where everything the user owns lives (default /workspace if writable, else ./workspace)",
    "STUDIO_PASSWORD": "password for every page and API route (unset: open studio, a banner says so)",
    "STUDIO_DEMO": "1: tiny local demo models instead of downloads",
    "HOST": "address the browser-facing services bind (default 0.0.0.0)",
    "PORT": "dataset manager port (3000)",
    "QWEN_HOST": "address the caption service binds (default 127.0.0.1)",
    "QWEN_PORT": "caption service port (11435)",
    "TRAINER_PORT": "trainer port (8675)",
    "CAPTION_URL": "caption service URL the other services call (default http://127.0.0.1:$QWEN_PORT)",
    "DEV_MODEL_PATH": "caption model GGUF to load instead of the registry's",
    "DEV_MMPROJ_PATH": "caption projector (mmproj) GGUF to load instead of the registry's",
    "HF_TOKEN": "Hugging Face token for model downloads, private or gated datasets and LoRAs added from a link, "
                "and publishing a LoRA or a dataset (needs write access)",
    "HF_ENDPOINT": "hub address for downloads (mirrors, tests)",
    "CIVITAI_TOKEN": "Civitai API key, for LoRAs from Civitai links whose download needs a signed-in account",
    "CIVITAI_URL": "Civitai's address (https://civitai.com; a mirror, tests)",
    "MAX_UPLOAD_MB": "largest upload accepted, in MB (20480)",
    "UPLOAD_CHUNK_MB": "browser upload chunk size, in MB (32)",
    "MAX_IMAGE_PIXELS": "largest image accepted, in pixels (80,000,000)",
    "ZIP_MAX_TOTAL_MB": "largest total uncompressed content of a ZIP or a Parquet file, in MB (20480)",
    "ZIP_MAX_RATIO": "largest compression ratio of a ZIP entry (200)",
    "VIDEO_MAX_FRAMES": "most frames taken from one video (60)",
    "VIDEO_FRAME_SECONDS": "a video gives its sharpest frame of every this many seconds (2)",
    "ALLOW_PRIVATE_URLS": "1: Import from a link (and the serverless worker's `url` inputs) may fetch "
                          "from private and local addresses (a NAS on your network), and a job's own webhook may "
                          "go to one; off by default",
    "CAPTION_IDLE_UNLOAD_S": "caption model unloads after this many idle seconds (600; 0 = never)",
    "CAPTION_MAX_PIXELS": "images are downscaled to this many pixels before captioning (1,048,576)",
    "CAPTION_MAX_IMAGE_TOKENS": "upper bound of image tokens per caption (1024)",
    "CAPTION_QUEUE_SIZE": "caption requests allowed to wait; more get 503 (8)",
    "CAPTION_TIMEOUT_S": "longest time one caption request may take (120)",
    "CAPTION_GPU_LAYERS": "layers on the GPU when CUDA is present (-1 = all)",
    "WEBHOOK_SECRET": "HMAC-SHA256 key for job webhooks",
    "WEBHOOK_URL": "every training job's webhook unless the job gives its own: a Discord or Slack webhook gets a "
                   "chat message when a job starts and ends, any other URL the signed JSON",
    "STOP_POD_WHEN_IDLE": "1: stop the pod a minute after the queue is done and nothing runs (the dashboard's Queue "
                          "panel turns it on or off while the pod runs)",
    "RUNPOD_POD_ID": "set by RunPod; used to stop the pod when idle and to read its price",
    "RUNPOD_API_KEY": "set by RunPod; used to stop the pod when idle and to read its price",
    "RUNPOD_API_URL": "RunPod REST API address",
    "GPU_PRICE_PER_HOUR": "what the machine costs an hour in US dollars, for the trainer's cost figures (on RunPod "
                          "read from the pod itself; 0: none shown)",
    "GPU_WORKERS": "training jobs run at once: one per GPU on a pod with several (0, the default); 1 trains one "
                   "at a time on the first GPU",
    "STUDIO_REVIVE_AFTER_S": "a service that kept crashing at start (supervisord gave up on it) is started again "
                             "this long after, in s (60)",
    "RENDER_KEEP_WARM_S": "Try the LoRA keeps its models loaded this long for the next render, in s (180; 0 = unload)",
    "S3_ENDPOINT_URL": "S3-compatible endpoint (R2_ENDPOINT_URL accepted)",
    "S3_BUCKET": "bucket for datasets and outputs (R2_BUCKET accepted)",
    "S3_ACCESS_KEY_ID": "access key (R2_ACCESS_KEY_ID accepted)",
    "S3_SECRET_ACCESS_KEY": "secret key (R2_SECRET_ACCESS_KEY accepted)",
    "S3_REGION": "region (auto)",
    "S3_OUTPUT_PREFIX": "prefix finished LoRAs are pushed to (R2_OUTPUT_PREFIX accepted)",
}
