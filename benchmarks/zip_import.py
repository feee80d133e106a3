"""Import a 500-image ZIP through the dataset manager's HTTP upload (real server, chunked upload,
background import with verification, hashes and thumbnails) and compare with plain `unzip` of the
same archive, measured side by side in one run. The same images as a Parquet file (a Hugging Face dataset's
layout) go through the same upload and compare with reading every row with pyarrow and writing the files.

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


def images(count: int, size: int):
    rng = np.random.default_rng(0)
    for i in range(count):
        blocks = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(blocks).resize((size, size), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        yield f"img_{i:04d}.jpg", buffer.getvalue(), f"a test image number {i}"


def build_zip(path: Path, count: int, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, caption in images(count, size):
            archive.writestr(f"set/{name}", data)
            archive.writestr(f"set/{name[:-4]}.txt", caption)


def build_parquet(path: Path, count: int, size: int) -> None:
    """The layout `datasets.push_to_hub` writes: an Image struct and a text column, rows in groups of 100."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(images(count, size))
    table = pa.table({"image": [{"bytes": data, "path": name} for name, data, _ in rows],
                      "text": [caption for _, _, caption in rows]})
    features = {"image": {"_type": "Image"}, "text": {"dtype": "string", "_type": "Value"}}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, path, row_group_size=100)


def pyarrow_seconds(table: Path, out: Path) -> float:
    """The bare extraction: read every row with pyarrow, write each image and its caption."""
    import pyarrow.parquet as pq

    out.mkdir(parents=True)
    start = time.perf_counter()
    for batch in pq.ParquetFile(table).iter_batches(batch_size=100):
        for row in batch.to_pylist():
            (out / row["image"]["path"]).write_bytes(row["image"]["bytes"])
            (out / (row["image"]["path"][:-4] + ".txt")).write_text(row["text"])
    return time.perf_counter() - start


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
        table = tmp_path / "bench.parquet"
        build_parquet(table, args.images, args.size)
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
            arrow_s = pyarrow_seconds(table, tmp_path / "rows")
            parquet_s, parquet_state = http_import_seconds(base, table)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        imported = len(state["result"]["imported"])
        print(f"archive: {args.images} images of {args.size}x{args.size} px + captions, "
              f"{archive.stat().st_size / 2**20:.1f} MB")
        print(f"{tool}: {unzip_s:.3f} s")
        print(f"HTTP upload + import ({imported} images verified, hashed, thumbnailed): {http_s:.3f} s")
        print(f"ratio (HTTP import / {tool}): {http_s / unzip_s:.1f}x")
        print(f"parquet: the same images, {table.stat().st_size / 2**20:.1f} MB")
        print(f"pyarrow, every row read and written: {arrow_s:.3f} s")
        print(f"HTTP upload + import of the Parquet file ({len(parquet_state['result']['imported'])} images): "
              f"{parquet_s:.3f} s")
        print(f"ratio (Parquet import / pyarrow): {parquet_s / arrow_s:.1f}x; "
              f"(Parquet import / ZIP import): {parquet_s / http_s:.2f}x")


if __name__ == "__main__":
    main()
