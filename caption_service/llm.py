"""llama-cpp-python's Qwen2.5-VL chat handler with bounded image tokens, and how the model is opened.

Everything that touches llama_cpp imports it lazily, so the service starts (and health answers) even
where the wheel is missing.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from studio.registry import ModelPaths
from studio.settings import Settings

MAX_NEW_TOKENS = 1024
PROMPT_TOKENS = 512  # room for the system prompt and instructions in the context
SMALL_MODEL_BYTES = 64 * 1024 * 1024


@functools.cache
def _bounded_handler_class():
    """Built lazily so importing this module never needs llama_cpp (health answers without it)."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd_cpp
    from llama_cpp._utils import suppress_stdout_stderr
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

    class BoundedQwen25VLChatHandler(Qwen25VLChatHandler):
        """Qwen25VLChatHandler with a bounded image-token count and a choice of GPU or CPU projector.

        In llama-cpp-python 0.3.36 the stock `_init_mtmd_context` hard-codes `use_gpu=True` and keeps
        the model's 8..4096 image tokens (a 4K photo costs thousands of tokens). This is the stock code
        with those two fields set. Like the stock one it runs lazily, on the first chat completion.
        """

        def __init__(self, clip_model_path: str, image_min_tokens: int = 0, image_max_tokens: int = 1024,
                     use_gpu: bool = False, **kwargs):
            super().__init__(clip_model_path=clip_model_path, **kwargs)
            self.image_min_tokens = image_min_tokens  # 0 = model default (8)
            self.image_max_tokens = image_max_tokens  # 0 = model default (4096)
            self.use_gpu = use_gpu

        def _init_mtmd_context(self, llama_model):
            if self.mtmd_ctx is not None:
                return
            with suppress_stdout_stderr(disable=self.verbose):
                params = mtmd_cpp.mtmd_context_params_default()
                params.use_gpu = self.use_gpu
                params.print_timings = self.verbose
                params.n_threads = llama_model.n_threads
                fa_on = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
                params.flash_attn_type = (fa_on if llama_model.context_params.flash_attn_type == fa_on
                                          else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
                params.image_min_tokens = self.image_min_tokens
                params.image_max_tokens = self.image_max_tokens
                self.mtmd_ctx = mtmd_cpp.mtmd_init_from_file(self.clip_model_path.encode(), llama_model.model,
                                                             params)
            if self.mtmd_ctx is None:
                raise ValueError(f"Failed to load mtmd context from: {self.clip_model_path}")
            if not mtmd_cpp.mtmd_support_vision(self.mtmd_ctx):
                raise ValueError("Vision is not supported by this model")

            def free():
                if self.mtmd_ctx is not None:
                    mtmd_cpp.mtmd_free(self.mtmd_ctx)
                    self.mtmd_ctx = None

            llama_model._stack.callback(free)

    return BoundedQwen25VLChatHandler


_LOGS_ROUTED = False


def __getattr__(name: str):
    # `from caption_service.llm import BoundedQwen25VLChatHandler` imports llama_cpp only when asked.
    if name == "BoundedQwen25VLChatHandler":
        return _bounded_handler_class()
    raise AttributeError(name)


def _route_mtmd_logs() -> None:
    """mtmd prints per-call progress on stderr even with verbose=False; send it through llama-cpp's
    logger, which honours verbose and still shows errors."""
    global _LOGS_ROUTED
    if _LOGS_ROUTED:
        return
    import llama_cpp._logger
    import llama_cpp.mtmd_cpp as mtmd_cpp

    mtmd_cpp.mtmd_log_set(llama_cpp._logger.llama_log_callback, None)
    mtmd_cpp.mtmd_helper_log_set(llama_cpp._logger.llama_log_callback, None)
    _LOGS_ROUTED = True


def detect_device() -> str:
    """'cuda' when this llama-cpp-python build can offload to a GPU, else 'cpu'."""
    try:
        import llama_cpp
    except ImportError:
        return "cpu"
    return "cuda" if llama_cpp.llama_supports_gpu_offload() else "cpu"


def cpu_threads(model_file: Path, device: str) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    if model_file.stat().st_size < SMALL_MODEL_BYTES:
        return 1  # tiny demo model: thread hand-offs cost more than the arithmetic
    if device == "cuda":
        return min(4, cpus)  # every layer is on the GPU; the CPU only feeds it
    return max(1, cpus // 2) if cpus > 4 else cpus  # llama.cpp runs best on physical cores


def llama_options(settings: Settings, paths: ModelPaths, device: str) -> dict:
    """Keyword arguments for `Llama(...)` (also used by the benchmark's direct calls)."""
    threads = cpu_threads(paths.caption_model, device)
    return {
        "model_path": str(paths.caption_model),
        "n_gpu_layers": settings.caption_n_gpu_layers if device == "cuda" else 0,
        "n_ctx": settings.caption_max_image_tokens + MAX_NEW_TOKENS + PROMPT_TOKENS,
        "n_threads": threads,
        "n_threads_batch": threads,
        "seed": 0,
        "verbose": False,
    }


def build_llama(settings: Settings, paths: ModelPaths, device: str):
    """Load the text model and its projector; the projector is initialised here too, so a broken
    mmproj shows up at load time and the first caption is not slower than the rest."""
    from llama_cpp import Llama

    _route_mtmd_logs()
    handler_class = _bounded_handler_class()
    handler = handler_class(clip_model_path=str(paths.caption_mmproj),
                            image_max_tokens=settings.caption_max_image_tokens,
                            use_gpu=device == "cuda", verbose=False)
    llm = Llama(chat_handler=handler, **llama_options(settings, paths, device))
    try:
        handler._init_mtmd_context(llm)
    except Exception:
        llm.close()
        raise
    return llm
