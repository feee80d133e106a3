"""Caption N images through the caption service's HTTP API and with direct llama-cpp-python calls.

    .venv/bin/python benchmarks/caption_service.py [--n 20] [--max-tokens 48] [--rounds 2]

Builds the tiny demo Qwen2.5-VL pair in a temporary STUDIO_ROOT, starts the real service
(`python -m caption_service`, gunicorn) on a free port, and captions the same images both ways in
the same run, interleaved: same model files, same Llama options, same max_tokens, same image
preprocessing and sampling. Prints both totals and the ratio HTTP / direct (goal: at most 1.10).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from caption_service.captioning import GENERATION, messages_for  # noqa: E402
from caption_service.images import prepare  # noqa: E402
from caption_service.llm import build_llama, detect_device  # noqa: E402
from caption_service.prompts import clean_caption, instruction_for  # noqa: E402
from studio.demo import ensure_demo_models  # noqa: E402
from studio.settings import load_settings  # noqa: E402

STYLE = "detailed"


def make_images(n: int) -> list[bytes]:
    """Deterministic test pictures of a few sizes, PNG-encoded like uploads."""
    images = []
    for i in range(n):
        width, height = (640, 480) if i % 3 else (1024, 768)
        image = Image.new("RGB", (width, height), ((37 * i) % 256, (91 * i) % 256, (53 * i + 80) % 256))
        draw = ImageDraw.Draw(image)
        draw.rectangle((width // 8, height // 8, width // 2, height // 2), fill=(220, (20 * i) % 256, 30))
        draw.ellipse((width // 2, height // 3, width - 20, height - 20), fill=(30, 200, (15 * i) % 256))
        buf = io.BytesIO()
        image.save(buf, "PNG")
        images.append(buf.getvalue())
    return images


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(root: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "STUDIO_ROOT": str(root), "STUDIO_DEMO": "1", "QWEN_HOST": "127.0.0.1",
           "QWEN_PORT": str(port), "CAPTION_IDLE_UNLOAD_S": "0", "PYTHONPATH": str(REPO)}
    env.pop("STUDIO_PASSWORD", None)
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "caption_service"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the caption service exited with code {proc.returncode}; see {log_path}")
        try:
            health = requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            if health["status"] == "ready":
                return proc
            if health["status"] == "error":
                raise SystemExit(f"the caption service could not load the model: {health['reason']}")
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit("the caption service did not become ready within 120 s")


def caption_http(session: requests.Session, url: str, data: bytes, max_tokens: int) -> str:
    body = {"image": base64.b64encode(data).decode("ascii"), "style": STYLE, "max_tokens": max_tokens}
    response = session.post(url + "/caption", json=body, timeout=120)
    response.raise_for_status()
    return response.json()["caption"]


def caption_direct(llm, settings, data: bytes, max_tokens: int) -> str:
    style, instruction = instruction_for(STYLE, None)
    uri = prepare(data, settings.max_image_pixels, settings.caption_max_pixels)
    out = llm.create_chat_completion(messages=messages_for(uri, instruction), max_tokens=max_tokens, **GENERATION)
    choice = out["choices"][0]
    return clean_caption(choice["message"]["content"] or "", style, truncated=choice["finish_reason"] == "length")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="images per round (20)")
    parser.add_argument("--max-tokens", type=int, default=48, help="new tokens per caption (48)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the images (2)")
    args = parser.parse_args(argv)

    # Load llama.cpp before the demo-model writer (gguf) is imported: with a CUDA build, gguf's
    # imports loaded first made the model load crash (seen on an H100; the service does the same).
    device = detect_device()
    with tempfile.TemporaryDirectory(prefix="caption-bench-") as tmp:
        root = Path(tmp)
        settings = load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1"})
        paths = ensure_demo_models(settings, zimage=False)
        images = make_images(args.n)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_service(root, port, root / "caption_service.log")
        llm = build_llama(settings, paths, device)
        session = requests.Session()
        http_times, direct_times, same = [], [], 0
        try:
            caption_http(session, url, images[0], args.max_tokens)  # warm both paths once
            caption_direct(llm, settings, images[0], args.max_tokens)
            for round_index in range(args.rounds):
                for i, data in enumerate(images):
                    # Alternate which path goes first so drift in machine load hits both alike.
                    order = ("http", "direct") if (i + round_index) % 2 == 0 else ("direct", "http")
                    captions = {}
                    for path in order:
                        started = time.perf_counter()
                        if path == "http":
                            captions[path] = caption_http(session, url, data, args.max_tokens)
                            http_times.append(time.perf_counter() - started)
                        else:
                            captions[path] = caption_direct(llm, settings, data, args.max_tokens)
                            direct_times.append(time.perf_counter() - started)
                    same += captions["http"] == captions["direct"]
        finally:
            llm.close()
            proc.terminate()
            proc.wait(30)

    count = len(http_times)
    http_total, direct_total = sum(http_times), sum(direct_times)
    print(f"caption service benchmark: {count} captions ({args.n} images x {args.rounds} rounds), "
          f"max_tokens={args.max_tokens}, style={STYLE}, device={device}, model={paths.caption_model.name}")
    print(f"HTTP API (gunicorn): total {http_total:.3f} s, median {statistics.median(http_times) * 1000:.1f} ms")
    print(f"direct llama-cpp   : total {direct_total:.3f} s, median {statistics.median(direct_times) * 1000:.1f} ms")
    print(f"identical captions : {same}/{count}")
    ratio = http_total / direct_total
    print(f"ratio HTTP/direct  : {ratio:.3f} (goal <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
