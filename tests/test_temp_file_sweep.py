"""A copy that place_file makes (a disk without hard links) is written under a hidden temp name, then renamed. A
process killed half way left that temp file for good: hundreds of MB of a LoRA in trainer/loras or in ComfyUI's
loras. The worker sweeps them when it starts, once nothing wrote to them for an hour; nothing else there goes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from studio.atomic import sweep_temp_files
from studio.settings import load_settings
from trainer.worker import Worker

KILLED_HALF_WAY = textwrap.dedent("""
    import os, shutil, signal, sys
    from pathlib import Path
    from studio import atomic

    def link(*_):
        raise OSError("no hard links on this disk")

    def copy_and_die(source, target):
        Path(target).write_bytes(Path(source).read_bytes()[:1000])
        os.kill(os.getpid(), signal.SIGKILL)

    os.link, shutil.copyfile = link, copy_and_die
    atomic.place_file(Path(sys.argv[1]), Path(sys.argv[2]))
""")


def _killed_copy(tmp_path: Path, target: Path) -> Path:
    source = tmp_path / "lora.safetensors"
    source.write_bytes(os.urandom(4000))
    child = subprocess.run([sys.executable, "-c", KILLED_HALF_WAY, str(source), str(target)],
                           cwd=Path(__file__).resolve().parent.parent, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    (left,) = [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert left.name.startswith(f".{target.name}.") and not target.exists()
    return left


def test_a_copy_killed_half_way_is_swept_once_it_is_idle(tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    left = _killed_copy(tmp_path, folder / "my-cat.safetensors")
    others = [folder / "kept.safetensors", folder / ".hidden", folder / "visible.tmp"]
    for other in others:
        other.write_bytes(b"x")
    (folder / ".link.tmp").symlink_to(tmp_path / "lora.safetensors")
    (folder / ".folder.tmp").mkdir()
    assert sweep_temp_files(folder) == 0 and left.exists()  # fresh: it may be a copy under way
    old = time.time() - 2 * 3600
    for path in (left, *others):
        os.utime(path, (old, old))
    assert sweep_temp_files(folder) == 1 and not left.exists()
    assert all(p.exists() for p in others) and (folder / ".link.tmp").is_symlink() and (folder / ".folder.tmp").is_dir()
    assert sweep_temp_files(tmp_path / "missing") == 0 and sweep_temp_files(None) == 0


def test_the_worker_sweeps_the_library_and_comfyuis_loras_when_it_starts(tmp_path):
    settings = load_settings({"STUDIO_ROOT": str(tmp_path / "root"), "STUDIO_DEMO": "1",
                              "CAPTION_URL": "http://127.0.0.1:9"})
    worker = Worker(settings, poll_s=0.05)
    comfy = worker.workspace.root / "ComfyUI" / "models" / "loras"
    comfy.mkdir(parents=True)
    lefts = [_killed_copy(tmp_path, folder / "my-cat.safetensors") for folder in (worker.workspace.loras, comfy)]
    old = time.time() - 2 * 3600
    for left in lefts:
        os.utime(left, (old, old))
    stopper = threading.Timer(0.5, worker.request_shutdown)
    stopper.start()
    try:
        worker.run_forever()
    finally:
        stopper.cancel()
    assert not any(left.exists() for left in lefts)
