"""Regional compilation: torch.compile on each transformer block instead of the whole model.

The 30 main blocks (and the refiners) share one class and one set of shapes, so Dynamo compiles the
block once and reuses the code for every instance: start-up costs one block's compile, not the model's.
The compiled kernels are cached under the workspace (STUDIO_ROOT/trainer/cache/torch_compile), so a
pod that restarts finds them on its persistent disk instead of compiling from zero.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

BLOCK_LISTS = ("noise_refiner", "context_refiner", "layers")
# every aspect-ratio bucket is its own sequence length; after the second one Dynamo marks the length
# dynamic, but a job with many buckets can still see several graphs per block
RECOMPILE_LIMIT = 64


def compile_support(device: torch.device) -> str | None:
    """None when compiled blocks can run on `device`; otherwise why not, as one sentence."""
    if device.type != "cuda":
        return "compiled blocks are built for CUDA GPUs (the CPU build needs a C++ toolchain and gains little)"
    try:
        from torch.utils._triton import has_triton
    except ImportError:
        return f"this PyTorch ({torch.__version__}) cannot tell whether Triton is installed"
    if not has_triton():
        return "Triton is not installed (or does not support this GPU)"
    return None


def use_cache_dir(folder: Path) -> Path:
    """Point Inductor's and Triton's on-disk caches at `folder` unless the user already chose one.
    Must run before the first compile, which reads these at start."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    try:  # the FX graph cache and the AOT autograd cache make a warm start skip most of the work
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        if hasattr(functorch_config, "enable_autograd_cache"):
            functorch_config.enable_autograd_cache = True
    except ImportError:
        pass
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def blocks(transformer: nn.Module) -> list[nn.Module]:
    found = []
    for name in BLOCK_LISTS:
        found.extend(getattr(transformer, name, None) or [])
    return found


def compile_blocks(transformer: nn.Module, mode: str | None = None, backend: str | Callable = "inductor") -> int:
    """Compile every block in place (module.compile keeps names, so state dicts and LoRA keys are
    unchanged). Returns how many blocks were wrapped; nothing is compiled until the first call. A block
    whose compile fails (a compiler bug, a kernel this GPU lacks) runs uncompiled instead of failing the job:
    compiling is on by default, so it must never cost a run."""
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = max(
            torch._dynamo.config.accumulated_cache_size_limit, RECOMPILE_LIMIT * 8)
    found = blocks(transformer)
    for block in found:
        block.compile(mode=mode, backend=backend)
    return len(found)


def is_compiled(transformer: nn.Module) -> bool:
    return any(getattr(block, "_compiled_call_impl", None) is not None for block in blocks(transformer))


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Run compiled blocks eagerly inside (previews): sampling under no_grad, with hooks and the LoRA
    switched off, would otherwise trigger fresh compiles for a few images."""
    stance = getattr(torch.compiler, "set_stance", None)
    if stance is None:
        yield
        return
    with stance("force_eager"):
        yield


def is_compile_error(exc: BaseException | None) -> bool:
    """Whether `exc` (or what led to it) comes from compiling (Dynamo, Inductor, Triton) rather than from the
    model: a failure of the backward graph, compiled at the first backward pass, reaches the training step."""
    for _ in range(8):
        if exc is None:
            return False
        if (type(exc).__module__ or "").startswith(("torch._dynamo", "torch._inductor", "triton")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def run_uncompiled() -> None:
    """From now on the compiled blocks run eagerly (after a compile failure): same weights, same results."""
    stance = getattr(torch.compiler, "set_stance", None)
    if stance is not None:
        stance("force_eager")
    else:  # an older PyTorch: switch Dynamo off altogether
        import torch._dynamo as dynamo

        dynamo.config.disable = True


def enable(transformer: nn.Module, device: torch.device, cache_root: Path, log: Callable[[str], None]) -> bool:
    """compile = on/auto: compile the blocks when the machine supports it, else say why in one line."""
    reason = compile_support(device)
    if reason:
        log(f"torch.compile is off: {reason}; the blocks run uncompiled.")
        return False
    cache = use_cache_dir(cache_root)
    count = compile_blocks(transformer)
    log(f"torch.compile: {count} transformer blocks compiled on first use (kernel cache in {cache}; the first "
        "steps take about 40 s more while they compile, a restarted job reuses the cache; a block that fails to "
        "compile runs uncompiled).")
    return True
