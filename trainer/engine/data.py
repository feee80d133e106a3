"""Reading exported datasets: images + same-stem .txt captions, trigger words, aspect-ratio buckets,
and a stateless batch order (batch i depends only on the seed and i, which makes resume exact).

A job trains on one dataset folder or on several, each with its repeats: an image of a dataset with
repeats 3 is seen three times an epoch, so a small set of close-ups weighs as much as a larger one."""

from __future__ import annotations

import hashlib
import io
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from studio.ahead import in_order
from studio.pixels import ORIENTATION, TURNED, in_srgb, upright
from trainer.buckets import example_buckets
from trainer.engine.errors import TrainingError
from trainer.export_triggers import export_meta, trigger_words

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp"}
TRIGGER = "[trigger]"


@dataclass(frozen=True)
class ImageItem:
    path: Path
    caption: str
    sha256: str
    width: int
    height: int
    repeats: int = 1  # how many times an epoch it is trained on (its dataset's repeats)


@dataclass(frozen=True)
class DatasetSource:
    """One dataset folder of a job and how many times an epoch its images are seen."""

    folder: Path
    repeats: int = 1


def as_sources(data) -> list[DatasetSource]:
    """A job's data as a list of sources: a folder (one dataset, repeats 1), or a list of sources, folders or
    (folder, repeats) pairs."""
    if isinstance(data, str | Path):
        return [DatasetSource(Path(data))]
    out = [s if isinstance(s, DatasetSource) else DatasetSource(Path(s)) if isinstance(s, str | Path)
           else DatasetSource(Path(s[0]), int(s[1])) for s in data]
    if not out:
        raise TrainingError("The job names no dataset to train on.")
    return out


@dataclass(frozen=True)
class Sample:
    """One training example: an image at one resolution, in its bucket."""

    item: ImageItem
    bucket: tuple[int, int]  # (width, height)
    flip: bool = False  # the mirror image (flip_horizontal)


def apply_trigger(text: str, trigger: str) -> str:
    """[trigger] becomes the trigger word; a caption without the word gets it prepended."""
    if not trigger:
        return " ".join(text.replace(TRIGGER, "").split())
    if TRIGGER in text:
        return text.replace(TRIGGER, trigger)
    if re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", text, flags=re.IGNORECASE):
        return text
    return f"{trigger}, {text}" if text.strip() else trigger


def _checked(path: Path) -> tuple[str, int, int] | str:
    """(SHA-256, width, height as shown) of a picture decoded to its last byte, so a truncated file fails here,
    not mid-training; else why it cannot be read. A JPEG decodes at 1/8 scale: libjpeg still reads every byte,
    in a fraction of the time. Several run at once (read_dataset)."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:  # the bytes read for the hash, not the file again
            width, height = im.size
            if im.getexif().get(ORIENTATION) in TURNED:
                width, height = height, width
            if im.format == "JPEG":
                im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return str(exc)
    return hashlib.sha256(data).hexdigest(), width, height


def read_dataset(dataset_dir: Path, config, warn: Callable[[str], None], trigger: str | None = None
                 ) -> list[ImageItem]:
    """The images of one folder with their captions, `trigger` (default: the job's trigger word) applied."""
    trigger = config.trigger_word if trigger is None else trigger
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise TrainingError(f"The dataset folder {dataset_dir} does not exist; export the dataset first.")
    images = sorted(p for p in dataset_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise TrainingError(f"The dataset {dataset_dir.name} has no images (.jpg, .jpeg, .png, .webp); "
                            "add images and export it again.")
    missing = [p.name for p in images if not p.with_suffix(".txt").is_file()]
    if missing and config.missing_captions == "error":
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise TrainingError(f"{len(missing)} image(s) have no caption ({shown}); caption them or set "
                            "missing_captions to default_caption.")
    items = []
    for path, found in zip(images, in_order(_checked, images, name="dataset"), strict=True):
        if isinstance(found, str):
            warn(f"Skipping {path.name}: it is not a readable image ({found}).")
            continue
        digest, width, height = found
        txt = path.with_suffix(".txt")
        caption = txt.read_text("utf-8", errors="replace").strip() if txt.is_file() else ""
        if not caption:
            caption = config.default_caption
        items.append(ImageItem(path, apply_trigger(caption, trigger), digest, width, height))
    if not items:
        raise TrainingError(f"None of the {len(images)} image(s) in {dataset_dir.name} could be read; "
                            "re-export the dataset with valid images.")
    return items


def read_datasets(sources: list[DatasetSource], config, warn: Callable[[str], None]) -> list[ImageItem]:
    """The images of every source, in source order, each carrying its source's repeats and trigger word."""
    items = []
    for source, trigger in zip(sources, source_triggers(sources, config), strict=True):
        found = read_dataset(source.folder, config, warn, trigger)
        items.extend(found if source.repeats == 1 else [replace(item, repeats=source.repeats) for item in found])
    return items


def source_triggers(sources: list[DatasetSource], config) -> list[str]:
    """The trigger word of each source (see trainer.export_triggers)."""
    return trigger_words([source.folder for source in sources], config.trigger_word)


def sources_label(sources: list[DatasetSource]) -> str:
    """The datasets for the log: `a (version v)`, or `a (version v) x3 + b (version w)`."""
    return " + ".join(dataset_label(s.folder) + (f" x{s.repeats}" if s.repeats != 1 else "") for s in sources)


def dataset_name(dataset_dir: Path) -> str:
    """The name the dataset was exported under, else the folder's name."""
    return export_meta(dataset_dir, "name") or Path(dataset_dir).name


def dataset_label(dataset_dir: Path) -> str:
    """The dataset's name for the log: dataset.json's name, with the export version when the folder is
    one (exported versions are folders named by their content hash)."""
    dataset_dir = Path(dataset_dir)
    name = dataset_name(dataset_dir)
    return name if name == dataset_dir.name else f"{name} (version {dataset_dir.name})"


def dataset_hash(items: list[ImageItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        repeats = f"\0x{item.repeats}" if item.repeats != 1 else ""  # a single-dataset job hashes as before
        digest.update(f"{item.path.name}\0{item.sha256}\0{item.caption}{repeats}\n".encode())
    return digest.hexdigest()


def build_samples(items: list[ImageItem], resolutions: list[int], flip: bool = False) -> list[Sample]:
    """Every image at every resolution (and its mirror image with `flip`); an image too small for several
    resolutions lands in the same bucket only once."""
    return [Sample(item, bucket, mirrored) for item in items
            for bucket in example_buckets(item.width, item.height, resolutions)
            for mirrored in ((False, True) if flip else (False,))]


def fit_to_bucket(im: Image.Image, sample: Sample) -> Image.Image:
    """`im` resized to cover the sample's bucket, centre-cropped to it, mirrored for a mirrored sample: the
    one geometry of the pixels and of their alpha mask."""
    w, h = sample.bucket
    scale = max(w / im.width, h / im.height)
    size = (max(w, round(im.width * scale)), max(h, round(im.height * scale)))
    if size != im.size:
        im = im.resize(size, Image.Resampling.LANCZOS)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    im = im.crop((left, top, left + w, top + h))
    return ImageOps.mirror(im) if sample.flip else im


def load_pixels(sample: Sample) -> Image.Image:
    """The image resized to cover its bucket and centre-cropped to it, RGB."""
    with Image.open(sample.item.path) as raw:
        _draft(raw, sample.bucket)
        im = upright(raw, srgb=False)  # a 16-bit greyscale PNG is not clipped to white
        if im.mode not in {"RGB", "CMYK", "L"}:
            im = im.convert("RGB")
    return in_srgb(fit_to_bucket(im, sample)).convert("RGB")  # a Display P3 photo's colours as people see them


def _draft(raw: Image.Image, bucket: tuple[int, int]) -> None:
    """A JPEG decodes at 1/2, 1/4 or 1/8 of its size when that still covers the bucket: libjpeg scales while it
    decodes, so a 12-megapixel phone photo for a 1024 px bucket loads about 2.4 times faster (4 times for 512),
    and the resize after it has fewer pixels to read."""
    if raw.format != "JPEG":
        return
    width, height = bucket
    if raw.getexif().get(ORIENTATION) in TURNED:  # stored on its side: the bucket's sides swap
        width, height = height, width
    scale = max(width / raw.width, height / raw.height)
    if scale < 0.5:
        raw.draft(None, (math.ceil(raw.width * scale), math.ceil(raw.height * scale)))


class BatchPlan:
    """Groups sample indices into per-bucket batches and shuffles them each epoch, seeded; batch i
    is a pure function of (seed, i), so a resumed job sees the same batches as an uninterrupted one.
    A sample whose image has repeats r is in an epoch r times (its latents are cached once)."""

    def __init__(self, samples: list[Sample], batch_size: int, seed: int):
        self.seed = seed
        by_bucket: dict[tuple[int, int], list[int]] = {}
        for index, sample in enumerate(samples):
            by_bucket.setdefault(sample.bucket, []).extend([index] * sample.item.repeats)
        self.buckets = by_bucket
        self.batch_size = batch_size
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        batches = []
        for bucket in sorted(self.buckets):
            indices = list(self.buckets[bucket])
            rng.shuffle(indices)
            batches.extend(indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size))
        rng.shuffle(batches)
        self._epoch_cache = (epoch, batches)
        return batches

    def __len__(self) -> int:
        return sum(math.ceil(len(v) / self.batch_size) for v in self.buckets.values())

    def batch(self, index: int) -> list[int]:
        epoch, position = divmod(index, len(self))
        return self.epoch(epoch)[position]
