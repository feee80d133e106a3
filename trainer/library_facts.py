"""What a file of the LoRA library is, read from its .safetensors header without loading a tensor (torch-free, for
the web pages): its metadata (with what the record of where it came from adds), rank, kind (LoRA or LyCORIS LoKr),
LoKr factor, trigger words, Make smaller's and Save as a LoRA's choices, and whether it is in another trainer's layout
(a file copied in by hand: its card offers Convert)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.atomic import atomic_write_json, read_json
from trainer.lokr_layout import factor_of
from trainer.lokr_lora import lora_options
from trainer.lora_file import CutShort, LoraFileError, lokr_modules, lora_ranks, read_header
from trainer.lora_formats import foreign_kind
from trainer.lora_resize import smaller_options


@dataclass(frozen=True)
class LoraFacts:
    """What the library shows of a file, from one read of its header (no tensor loaded)."""
    metadata: dict  # as safetensors_metadata gives it
    rank: int | None  # its largest, for "Make smaller"; None for a file without lora_A (a LoKr)
    lokr: bool  # a LyCORIS LoKr: tried, made smaller, merged (at a rank) and trained further like a LoRA
    lokr_factor: int | None = None  # the LoKr factor a job training it further sets (None: none of the studio's)
    smaller: tuple = ()  # "Make smaller"'s choices: {"rank", "bytes"} (trainer.lora_resize.smaller_options)
    as_lora: tuple = ()  # a LoKr's "Save as a LoRA" choices: {"rank", "bytes"} (trainer.lokr_lora.lora_options)
    foreign: str | None = None  # in another trainer's layout (copied in by hand): what it is, for its Convert button
    refused: str | None = None  # a file this studio cannot read (OFT, DoRA): why, in a sentence


def lora_facts(path: Path) -> LoraFacts:
    try:
        header = read_header(path)
        size = path.stat().st_size
    except CutShort as exc:  # its card says so (and offers nothing that would read it)
        return LoraFacts({}, None, False, refused=str(exc))
    except (LoraFileError, OSError):
        return LoraFacts({}, None, False)
    ranks = lora_ranks(header)
    lokr = bool(lokr_modules(header))
    source = read_source(path)  # read once: its keys go under the file's own, the card's trigger word over them
    try:
        foreign, refused = foreign_kind(header), None
    except LoraFileError as exc:
        foreign, refused = None, str(exc)
    return LoraFacts({**_from_source(source), **_metadata(header), **_user_keys(source)},
                     max(ranks.values()) if ranks else None, lokr,
                     factor_of(header), tuple(smaller_options(header, size)), tuple(lora_options(header, size)),
                     foreign, refused)


# A LoRA added from a link is kept byte for byte (its hash still finds it on Civitai and in LoRA managers): where it
# came from, and what Civitai says of it, live beside it in trainer/loras/.sources/<file>.json.
SOURCES_DIR = ".sources"


def source_file(path: Path) -> Path:
    """The record of where the library file `path` came from (it may not exist)."""
    return path.parent / SOURCES_DIR / f"{path.name}.json"


def write_source(path: Path, source: dict) -> None:
    atomic_write_json(source_file(path), source)


def read_source(path: Path) -> dict:
    source = read_json(source_file(path), {})
    return source if isinstance(source, dict) else {}


def _from_source(source: dict) -> dict:
    """The record as metadata keys the pages read (the file's own keys win over them, but not over the trigger word
    set on its card: `user_trigger`)."""
    words = [str(word) for word in source.get("trigger_words") or [] if str(word).strip()]
    keys = {"source_url": source.get("url"), "civitai_url": source.get("civitai_url"),
            "modelspec.title": source.get("title"), "modelspec.trigger_phrase": ", ".join(words),
            "comfyui_file": source.get("comfyui_file")}  # added from ComfyUI's loras (trainer.library_comfyui)
    return {key: str(value) for key, value in keys.items() if value}


def user_keys(path: Path) -> dict:
    """What was set on the file's card (trainer.library_edit), as metadata keys that win over the file's own."""
    return _user_keys(read_source(path))


def _user_keys(source: dict) -> dict:
    trigger = source.get(USER_TRIGGER)
    return {USER_TRIGGER: trigger} if isinstance(trigger, str) and trigger.strip() else {}


USER_TRIGGER = "user_trigger"


def trigger_of(meta: dict) -> str | None:
    """A LoRA file's trigger word(s) from its metadata: the one set on its card, else modelspec's phrase, else the
    studio's key."""
    return meta.get(USER_TRIGGER) or meta.get("modelspec.trigger_phrase") or meta.get("trigger_word") or None


SHOWN_CHARS = 4000  # a metadata value longer than this is cut on the cards (another trainer's tag counts run to MBs)


def shown(meta: dict) -> dict:
    """`meta` as the library's cards get it: each long value cut to SHOWN_CHARS with "…" (kohya's ss_tag_frequency
    of a big dataset is megabytes, sent for every card at every visit), the trigger words whole."""
    return {key: value if not isinstance(value, str) or len(value) <= SHOWN_CHARS or key == "trigger_words"
            else value[:SHOWN_CHARS] + "…" for key, value in meta.items()}


def safetensors_metadata(path: Path) -> dict:
    """The `__metadata__` of a .safetensors header, read without loading any tensor."""
    try:
        return _metadata(read_header(path))
    except LoraFileError:
        return {}


def _metadata(header: dict) -> dict:
    meta = header.get("__metadata__") if isinstance(header.get("__metadata__"), dict) else {}
    meta = {str(k): str(v) for k, v in meta.items()}
    meta["tensors"] = str(len([k for k in header if k != "__metadata__"]))
    return meta
