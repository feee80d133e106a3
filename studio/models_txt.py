"""The models.txt format: one model per line, `<hub repo> <revision> <files or patterns> <target folder>`.

Comments (`#` to the end of the line) and blank lines are allowed. A malformed line is an error that
names its line number, so a typo in the file stops the fetcher with a sentence the user can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from studio import registry

DEFAULT_MODELS_TXT = Path(__file__).resolve().parent.parent / "models.txt"

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]/+=@-]+$")
_TARGET_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_GLOB_CHARS = set("*?[")
_HUB_LINK = re.compile(r"^https?://(?:www\.)?(?:huggingface\.co|hf\.co)/([A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)")

# The folders the studio loads models from, keyed by what they are (studio.registry names them).
KNOWN_TARGETS = {
    registry.CAPTION_DIR: "caption",
    registry.ZIMAGE_DIR: "zimage",
    registry.ADAPTER_DIR: "adapter",
}


COMFYUI_TARGET = "comfyui"  # models-comfyui.txt's folder: the same model in ComfyUI's files


class ModelsFileError(ValueError):
    """models.txt cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class ModelSpec:
    repo: str
    revision: str
    patterns: tuple[str, ...]
    target: str
    line: int

    @property
    def key(self) -> str:
        """A short stable id: 'caption', 'zimage', 'adapter' for the registry's folders, else the folder."""
        return KNOWN_TARGETS.get(self.target, self.target)

    @property
    def name(self) -> str:
        """What a person calls it: the repo's name without its owner (ComfyUI's copy says so)."""
        name = self.repo.split("/", 1)[1]
        return f"{name} for ComfyUI" if self.target == COMFYUI_TARGET else name

    def is_exact(self, pattern: str) -> bool:
        return not (_GLOB_CHARS & set(pattern))


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    # A `#` after whitespace starts a trailing comment; file names never contain " #".
    match = re.search(r"\s#", line)
    return line[: match.start()] if match else line


def _check_pattern(pattern: str, where: str) -> None:
    if not pattern:
        raise ModelsFileError(f"{where}: the file list has an empty entry (two commas or a trailing comma).")
    if pattern.startswith("/") or "\\" in pattern or ".." in pattern.split("/") or not _PATTERN.match(pattern):
        raise ModelsFileError(f"{where}: {pattern!r} is not a valid file name or pattern inside the repo.")


def _check_target(target: str, where: str) -> None:
    parts = target.split("/")
    if target.startswith("/") or any(not _TARGET_PART.match(part) for part in parts):
        raise ModelsFileError(f"{where}: target folder {target!r} must be a relative folder name under models/.")
    if parts[0] == "demo":
        raise ModelsFileError(f"{where}: target folder 'demo' is reserved for the demo models.")


def parse_models_txt(text: str, source: str = "models.txt") -> list[ModelSpec]:
    """Parse models.txt content; raise ModelsFileError naming the first bad line."""
    specs: list[ModelSpec] = []
    targets: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        where = f"{source} line {number}"
        fields = line.split()
        if len(fields) > 4:  # "a.gguf, b.gguf" is one file list: spaces around its commas are not more columns
            joined = re.sub(r"\s*,\s*", ",", line).split()
            fields = joined if len(joined) == 4 else fields
        if len(fields) != 4:
            raise ModelsFileError(
                f"{where}: expected 4 columns (hub repo, revision, files, target folder) but found {len(fields)}."
            )
        repo, revision, files, target = fields
        if not _REPO.match(repo) or ".." in repo:
            link = _HUB_LINK.match(repo)
            hint = f" (for this link, write {link.group(1)!r})" if link else ""
            raise ModelsFileError(f"{where}: {repo!r} is not a hub repo name like 'owner/name'{hint}.")
        if not _REVISION.match(revision) or ".." in revision:
            raise ModelsFileError(f"{where}: {revision!r} is not a valid revision (branch, tag or commit hash).")
        patterns = tuple(part.strip() for part in files.split(","))
        for pattern in patterns:
            _check_pattern(pattern, where)
        if len(set(patterns)) != len(patterns):
            raise ModelsFileError(f"{where}: the file list names the same file twice.")
        target = target.rstrip("/")
        _check_target(target, where)
        if target in targets:
            raise ModelsFileError(f"{where}: target folder {target!r} is already used on line {targets[target]}.")
        targets[target] = number
        specs.append(ModelSpec(repo=repo, revision=revision, patterns=patterns, target=target, line=number))
    if not specs:
        raise ModelsFileError(f"{source} lists no models: add one line per model.")
    return specs


def load_models_txt(path: Path | None = None) -> list[ModelSpec]:
    path = Path(path or DEFAULT_MODELS_TXT)
    try:
        text = path.read_text("utf-8-sig")  # a byte-order mark (Windows editors) is not part of the first repo
    except OSError as exc:
        raise ModelsFileError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    except UnicodeDecodeError:
        raise ModelsFileError(f"{path} is not UTF-8 text.") from None
    return parse_models_txt(text, source=path.name)
