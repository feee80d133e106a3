"""Time before the first training step: the engine's latent caching (cache.prepare: JPEGs decoded at a reduced
scale when that still covers the bucket, the next pictures loaded on other cores while the VAE encodes) vs the
bare way in the same run (each picture decoded whole, resized and encoded, one after another), on the same phone
photos, the same VAE and the same buckets.

    .venv/bin/python benchmarks/latent_cache.py [--photos 16] [--bucket 1024] [--device cpu|cuda]

The tiny demo VAE stands in for the real one on a CPU: what is timed is mostly the picture loading, which is the
part a GPU does not speed up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402


def make_photos(folder: Path, count: int) -> list[Path]:
    """12-megapixel JPEGs with detail (a smooth picture would decode unrealistically fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        small = rng.integers(0, 255, (378, 504, 3), dtype=np.uint8)
        picture = Image.fromarray(small).resize((4032, 3024), Image.Resampling.BICUBIC)
        path = folder / f"IMG_{index:04d}.jpg"
        picture.save(path, quality=92)
        paths.append(path)
    return paths


def bare(samples, vae, processor) -> None:
    """What caching did before: each picture decoded whole, fitted, encoded, in turn."""
    from trainer.engine import model as zmodel
    from trainer.engine.data import fit_to_bucket

    for sample in samples:
        with Image.open(sample.item.path) as raw:
            picture = ImageOps.exif_transpose(raw).convert("RGB")
        zmodel.encode_image(vae, processor.preprocess(fit_to_bucket(picture, sample)))


def pictures_only(samples, processor) -> tuple[float, float]:
    """(bare, engine) seconds for the pictures alone, without the VAE: what remains on a GPU, where encoding a
    picture takes a few ms."""
    from studio.ahead import in_order
    from trainer.engine.data import fit_to_bucket, load_pixels

    start = time.perf_counter()
    for sample in samples:
        with Image.open(sample.item.path) as raw:
            picture = ImageOps.exif_transpose(raw).convert("RGB")
        processor.preprocess(fit_to_bucket(picture, sample))
    bare_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in in_order(lambda sample: processor.preprocess(load_pixels(sample)), samples):
        pass
    return bare_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--bucket", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from diffusers.image_processor import VaeImageProcessor

    from studio.demo import ensure_demo_models
    from studio.settings import load_settings
    from trainer.engine import cache as latent_cache
    from trainer.engine import model as zmodel
    from trainer.engine.data import ImageItem, Sample

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="latent-cache-") as tmp:
        root = Path(tmp)
        paths = ensure_demo_models(load_settings({"STUDIO_ROOT": str(root), "STUDIO_DEMO": "1"}), caption=False)
        photos = make_photos(root / "photos", args.photos)
        bucket = (args.bucket, args.bucket * 3 // 4)
        samples = [Sample(ImageItem(path, "", f"{index:064x}", 4032, 3024), bucket)
                   for index, path in enumerate(photos)]
        vae = zmodel.load_vae(paths, device)
        processor = VaeImageProcessor(vae_scale_factor=16)
        bare(samples[:2], vae, processor)  # warm-up

        start = time.perf_counter()
        bare(samples, vae, processor)
        bare_s = time.perf_counter() - start
        start = time.perf_counter()
        latent_cache.prepare(samples, [""], paths, device, torch.float32, root / "cache", lambda *a: None)
        engine_s = time.perf_counter() - start
        load_bare, load_engine = pictures_only(samples, processor)
    print(f"bare (whole decode, one after another) {bare_s:6.2f} s  ({bare_s / args.photos * 1000:.0f} ms a photo)")
    print(f"engine (cache.prepare)                 {engine_s:6.2f} s  ({engine_s / args.photos * 1000:.0f} ms a photo,"
          " text encoding of one caption included)")
    print(f"ratio engine / bare: {engine_s / bare_s:.2f} ({args.photos} photos of 12 megapixels into "
          f"{bucket[0]}x{bucket[1]}, {os.cpu_count()} cores, {device})")
    print(f"pictures alone (no VAE): bare {load_bare:.2f} s, engine {load_engine:.2f} s, "
          f"ratio {load_engine / load_bare:.2f}")


if __name__ == "__main__":
    main()
