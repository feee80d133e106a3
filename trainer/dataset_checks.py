"""Checking the exported datasets a job request names: which ones (one, or several with repeats), that
each exists and is readable, its images and captions, and the image sizes the estimate needs."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from studio import exports
from studio.atomic import read_json
from studio.text import CAPTION_TOKENS, name_list, over_caption_limit, plural
from studio.workspace import UnsafePathError, Workspace, safe_name
from trainer.buckets import MAX_ASPECT
from trainer.export_triggers import export_trigger

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
MAX_IMAGES_INSPECTED = 5000
LONG_CAPTION_BYTES = 380  # a shorter caption cannot reach the text encoder's limit: it is not read
MAX_DATASETS = 8
MAX_REPEATS = 100
SOURCE_KEYS = {"name", "version", "repeats"}


@dataclass
class Checked:
    """What the checks found in one dataset: its image count and the sizes of the images they could read."""

    name: str
    repeats: int
    images: int = 0
    sizes: list[tuple[int, int]] | None = None
    trigger: str = ""  # the trigger word it was exported with


def image_names(entries: list[str]) -> list[str]:
    """The images among a dataset folder's entries (hidden files left out)."""
    return [e for e in entries if Path(e).suffix.lower() in IMAGE_SUFFIXES and not e.startswith(".")]


def valid_repeats(value) -> bool:
    """A dataset's repeats: a whole number from 1 to MAX_REPEATS (true and false are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= MAX_REPEATS


def requested(payload: dict, report) -> list[dict]:
    """The datasets a request names, as [{"name", "version", "repeats"}]: its `datasets` list, else its
    `dataset` (and `dataset_version`). Errors for a malformed list go to `report`; [] then."""
    many = payload.get("datasets")
    if many is None:
        name = payload.get("dataset")
        if not name:
            report.error("dataset", "Pick an exported dataset to train on.")
            return []
        return [{"name": name, "version": payload.get("dataset_version"), "repeats": 1}]
    if payload.get("dataset") or payload.get("dataset_version"):
        report.error("datasets", "Name the datasets either in 'datasets' or in 'dataset', not in both.")
        return []
    if not isinstance(many, list) or not many:
        report.error("datasets", "'datasets' must be a list of {name, repeats} objects, at least one.")
        return []
    if len(many) > MAX_DATASETS:
        report.error("datasets", f"A job trains on at most {MAX_DATASETS} datasets ({len(many)} given).")
        return []
    out, seen = [], set()
    for index, entry in enumerate(many):
        where = f"Dataset {index + 1}"
        if not isinstance(entry, dict) or set(entry) - SOURCE_KEYS or not isinstance(entry.get("name"), str):
            report.error("datasets", f"{where} must be an object with a name, and optionally repeats and version.")
            continue
        repeats = entry.get("repeats", 1)
        if not valid_repeats(repeats):
            report.error("datasets", f"{where} ({entry['name']}): repeats must be a whole number from 1 to "
                                     f"{MAX_REPEATS}.")
            continue
        if entry["name"] in seen:
            report.error("datasets", f"{entry['name']!r} is named twice: give it more repeats instead.")
            continue
        seen.add(entry["name"])
        out.append({"name": entry["name"], "version": entry.get("version"), "repeats": repeats})
    return out if len(out) == len(many) else []


def check_datasets(workspace: Workspace, sources: list[dict], config: dict | None, report) -> list[Checked]:
    """Checks every dataset; the few-images warning judges them together."""
    several = len(sources) > 1
    found = [check_dataset(workspace, source, config, report, several) for source in sources]
    report.images = sum(item.images for item in found)
    if 0 < report.images < 5:
        report.warn("dataset", f"Only {plural(report.images, 'image')}: 10-30 varied images usually give a better "
                               "LoRA.")
    _check_holdout(config, report)
    _check_trigger(found, config, report)
    return found


def _check_trigger(found: list[Checked], config: dict | None, report) -> None:
    """A job without a trigger word on a dataset exported with one (a config pasted or sent without it): said."""
    if config is None or not found or not found[0].trigger or str(config.get("trigger_word") or "").strip():
        return
    word = found[0].trigger
    report.warn("trigger_word", f"{found[0].name} was exported with the trigger word {word}, and this job has none: "
                                f"its captions still hold {word}, but the previews leave [trigger] out and the LoRA's "
                                f"file and README name no trigger word. Set the trigger word to {word}, unless you "
                                "mean that.")


OVERFIT_NEEDS_HOLDOUT = ("Stopping when the LoRA overfits needs held-out images to watch: set holdout_images (1-2 of "
                         "20 images, say).")


def _check_holdout(config: dict | None, report) -> None:
    """holdout_images must leave images to train on; holding out many of few images costs the LoRA."""
    held = (config or {}).get("holdout_images") or 0
    if (config or {}).get("stop_when_overfitting") is True and not held:
        report.error("stop_when_overfitting", OVERFIT_NEEDS_HOLDOUT)
    if not isinstance(held, int) or held <= 0 or not report.images:
        return
    if held >= report.images:
        report.error("holdout_images", f"holdout_images is {held}, but the dataset has "
                                       f"{plural(report.images, 'image')}: keep at least one to train on.")
    elif held * 4 > report.images:
        report.warn("holdout_images", f"{plural(held, 'image')} of {report.images} are held out of training: "
                                      "with few images, one or two held out tell as much and the LoRA learns from "
                                      "the rest.")


def check_dataset(workspace: Workspace, source: dict, config: dict | None, report, several: bool = False) -> Checked:
    """One dataset: exists, readable, has images, their captions and sizes. Messages about a dataset of
    several start with its name."""
    name, version = source["name"], source.get("version")
    checked = Checked(name if isinstance(name, str) else "", source.get("repeats", 1))
    prefix = f"{name}: " if several else ""

    def error(field_name: str, message: str) -> Checked:
        report.error(field_name, prefix + message)
        return checked

    try:
        folder = workspace.export_dir(safe_name(name) if isinstance(name, str) else "")
        if version is not None:
            folder = exports.version_dir(workspace, version)
    except UnsafePathError:
        return error("dataset_version" if version is not None else "dataset", "That dataset name is not valid.")
    if not folder.is_dir():
        if version is not None:
            return error("dataset_version", f"Version {version} of {name!r} is no longer on disk: pick a current "
                                            "export.")
        return error("dataset", f"There is no exported dataset named {name!r}: export it from the dataset manager.")
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        return error("dataset", f"The dataset folder cannot be read ({exc.strerror}).")
    images = image_names(entries)
    checked.images = len(images)
    checked.trigger = export_trigger(folder)
    if not images:
        return error("dataset", f"The dataset {name!r} has no images (.jpg, .png, .webp).")
    present = set(entries)
    uncaptioned, too_long = [], []
    for image in images:
        caption = Path(image).stem + ".txt"
        size = (folder / caption).stat().st_size if caption in present else 0
        if not has_caption(folder / caption, size):
            uncaptioned.append(image)
        elif size > LONG_CAPTION_BYTES and (tokens := _caption_tokens(folder / caption)):
            too_long.append(f"{caption} ~{tokens}")
    if too_long:
        report.warn("dataset", f"{prefix}{plural(len(too_long), 'caption')} {'is' if len(too_long) == 1 else 'are'} "
                               f"longer than the text encoder reads (about {CAPTION_TOKENS} tokens: "
                               f"{name_list(too_long)}); the end of each is cut off. Shorten them in the dataset "
                               "manager (its counter shows the tokens).")
    if uncaptioned:
        names = name_list(uncaptioned)
        count = f"{plural(len(uncaptioned), 'image')} {'has' if len(uncaptioned) == 1 else 'have'} no caption"
        if config and config.get("missing_captions") == "error":
            report.error("dataset", f"{prefix}{count} ({names}); caption them or set missing captions to "
                                    "default_caption.")
        else:
            default = (config or {}).get("default_caption", "[trigger]")
            report.warn("dataset", f"{prefix}{count} ({names}); they train with the default caption {default!r}.")
    checked.sizes = _check_images(folder, images, config, report, prefix)
    soft = _flagged_soft(folder, present)
    if soft:
        report.warn("dataset", f"{prefix}{plural(len(soft), 'image')} {'looks' if len(soft) == 1 else 'look'} soft "
                               f"(out of focus, blurred or upscaled: {name_list(soft)}); a LoRA learns the softness "
                               "too. The dataset manager shows them under Flagged.")
    return checked


def has_caption(path: Path, size: int | None = None) -> bool:
    """A caption file with words in it: an export writes a bare line break for an image without a caption."""
    try:
        size = path.stat().st_size if size is None else size
        return size > 8 or (size > 0 and bool(path.read_text("utf-8", errors="replace").strip()))
    except OSError:
        return False


def _caption_tokens(path: Path) -> int | None:
    try:
        return over_caption_limit(path.read_text("utf-8", errors="replace"))
    except OSError:
        return None


def _flagged_soft(folder: Path, present: set[str]) -> list[str]:
    """The images the dataset manager flagged soft when it exported them (its dataset.json lists them)."""
    about = read_json(folder / "dataset.json", None)
    listed = about.get("soft") if isinstance(about, dict) else None
    return [n for n in listed if isinstance(n, str) and n in present] if isinstance(listed, list) else []


_headers: dict[tuple, tuple[int, int, bool] | None] = {}
_headers_lock = threading.Lock()
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def has_alpha(img: Image.Image) -> bool:
    """Whether an image has transparency to speak of: an alpha channel, or a palette with a transparent colour."""
    return img.mode in ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def image_header(path: Path) -> tuple[int, int, bool] | None:
    """(width, height, has an alpha channel) from the file header (None when unreadable); cached, since the
    form validates often."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _headers_lock:
        if key in _headers:
            return _headers[key]
    try:
        with Image.open(path) as img:
            found = (*img.size, has_alpha(img))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        found = None
    with _headers_lock:
        if len(_headers) > 100_000:
            _headers.clear()
        _headers[key] = found
    return found


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the file header (None when unreadable)."""
    found = image_header(path)
    return found[:2] if found else None


def _check_images(folder: Path, images: list[str], config: dict | None, report,
                  prefix: str = "") -> list[tuple[int, int]]:
    resolutions = (config or {}).get("resolutions") or [512]
    smallest_res = min(resolutions)
    broken, small, sizes, strips = [], [], [], []
    alpha = 0
    for image in images[:MAX_IMAGES_INSPECTED]:
        header = image_header(folder / image)
        if header is None:
            broken.append(image)
            continue
        width, height, transparent = header
        alpha += transparent
        sizes.append((width, height))
        # A bucket holds about res x res pixels and never upscales (trainer.buckets.bucket_for), so
        # an image with fewer pixels than the smallest bucket trains only at its own size.
        if width * height < smallest_res * smallest_res:
            small.append((width * height, image, width, height))
        if max(width, height) > MAX_ASPECT * min(width, height):
            strips.append((image, width, height))
    if broken:
        names = name_list(broken)
        if len(broken) == len(images):
            report.error("dataset", f"{prefix}None of the images can be read ({names}).")
        else:
            report.warn("dataset", f"{prefix}{plural(len(broken), 'image')} cannot be read and will be skipped "
                                   f"({names}).")
    if small:
        report.warn("resolutions", prefix + small_images_message(small, len(images), smallest_res, len(resolutions)))
    if strips:
        name, width, height = strips[0]
        one = len(strips) == 1
        report.warn("dataset", f"{prefix}{plural(len(strips), 'image')} {'is' if one else 'are'} longer than "
                               f"{MAX_ASPECT}:1 ({'' if one else 'first: '}{name}, {width}x{height}): "
                               f"{'it trains' if one else 'they train'} centre-cropped to {MAX_ASPECT}:1; crop "
                               f"{'it' if one else 'them'} yourself to choose what stays.")
    if (config or {}).get("alpha_mask") and sizes and not alpha:
        report.warn("alpha_mask", f"{prefix}Train on the visible part is on, but no image has transparency (a PNG or "
                                  "WebP with an alpha channel): every image trains whole.")
    return sizes


def small_images_message(small: list[tuple], total: int, smallest_res: int, resolution_count: int) -> str:
    """One sentence: how many images are below the smallest bucket, the smallest of them, what happens."""
    _, name, width, height = min(small)
    one = len(small) == 1
    which = f"{name}, {width}x{height}" if one else f"smallest: {name}, {width}x{height}"
    they, their = ("it", "its") if one else ("they", "their")
    trains = "trains" if one else "train"
    where = f"once at {their} own size instead of at all {resolution_count} resolutions" if resolution_count > 1 \
        else f"at {their} own size"
    return (f"{len(small)} of {plural(total, 'image')} {'is' if one else 'are'} below the smallest training size of "
            f"{smallest_res}x{smallest_res} px ({which}): {they} {trains} {where}, never upscaled, so replace or "
            f"remove {'it' if one else 'them'} for more detail.")
