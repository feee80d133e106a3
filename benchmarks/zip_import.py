"""Import a 500-image ZIP through the dataset manager's HTTP upload (real server, chunked upload,
background import with verification, hashes and thumbnails) and compare with plain `unzip` of the
same archive, measured side by side in one run.

    python benchmarks/zip_import.py [--images 500] [--size 256]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def build_zip(path: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(count):
            blocks = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
            image = Image.fromarray(blocks).resize((size, size), Image.Resampling.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            archive.writestr(f"set/img_{i:04d}.jpg", buffer.getvalue())
            archive.writestr(f"set/img_{i:04d}.txt", f"a test image number {i}")


def unzip_seconds(archive: Path, out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", "-o", str(archive), "-d", str(out)], check=True)
        tool = "unzip"
    else:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(out)
        tool = "python zipfile"
    return time.perf_counter() - start, tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if requests.get(url + "/health", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def http_import_seconds(base: str, archive: Path) -> tuple[float, dict]:
    dataset = requests.post(f"{base}/api/datasets", json={"name": "bench"}).json()["id"]
    api = f"{base}/api/datasets/{dataset}"
    size = archive.stat().st_size
    start = time.perf_counter()
    session = requests.post(f"{api}/uploads", json={"filename": archive.name, "size": size}).json()
    chunk = session["chunk_size"]
    with open(archive, "rb") as handle, requests.Session() as http:
        for n in range(session["chunks"]):
            response = http.put(f"{api}/uploads/{session['id']}/chunks/{n}", data=handle.read(chunk))
            response.raise_for_status()
    job = requests.post(f"{api}/uploads/{session['id']}/complete").json()
    while True:
        state = requests.get(f"{api}/imports/{job['id']}").json()
        if state["status"] not in {"queued", "running"}:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    if state["status"] != "completed":
        raise SystemExit(f"import failed: {state.get('error') or state['message']}")
    return elapsed, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zip-bench-") as tmp:
        tmp_path = Path(tmp)
        archive = tmp_path / "bench.zip"
        build_zip(archive, args.images, args.size)
        root = tmp_path / "root"
        port = free_port()
        env = {**os.environ, "STUDIO_ROOT": str(root), "PORT": str(port), "HOST": "127.0.0.1",
               "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(base, proc)
            unzip_s, tool = unzip_seconds(archive, tmp_path / "unzipped")
            http_s, state = http_import_seconds(base, archive)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        imported = len(state["result"]["imported"])
        print(f"archive: {args.images} images of {args.size}x{args.size} px + captions, "
              f"{archive.stat().st_size / 2**20:.1f} MB")
        print(f"{tool}: {unzip_s:.3f} s")
        print(f"HTTP upload + import ({imported} images verified, hashed, thumbnailed): {http_s:.3f} s")
        print(f"ratio (HTTP import / {tool}): {http_s / unzip_s:.1f}x")


if __name__ == "__main__":
    main()
