"""The workspace layout under STUDIO_ROOT, and confinement of request-supplied names to a root."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


class UnsafePathError(ValueError):
    """A name from a request would escape its root or is not a plain name."""


_PLAIN_NAME = re.compile(r"^[^/\\\x00-\x1f]+$")


def safe_name(name: str) -> str:
    """Return `name` if it is one plain path component (no separators, no `..`, no control chars)."""
    if not isinstance(name, str) or not name or name in {".", ".."} or not _PLAIN_NAME.fullmatch(name):
        raise UnsafePathError(f"{name!r} is not a valid name.")
    if len(name.encode("utf-8")) > 255:
        raise UnsafePathError("That name is too long (255 bytes at most).")
    return name


def confined(root: Path, *parts: str) -> Path:
    """Join `parts` under `root` and prove the result stays inside it (symlinks resolved)."""
    root = Path(root).resolve()
    for part in parts:
        if not isinstance(part, str) or part == "" or "\x00" in part:
            raise UnsafePathError(f"{part!r} is not a valid path.")
        if Path(part).is_absolute() or re.match(r"^[A-Za-z]:", part) or "\\" in part:
            raise UnsafePathError(f"{part!r} is not a relative path.")
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} points outside its folder.")
    return target


def unused_path(path: Path) -> Path:
    """`path`, or `stem-2.ext`, `stem-3.ext`... when a file of that name is there already: two sources that land on
    one name (S3 keys `a//b.jpg` and `a/b.jpg`) keep both instead of the later one replacing the first."""
    path = candidate = Path(path)
    number = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1
    return candidate


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def uploads(self) -> Path:
        return self.root / ".uploads"

    @property
    def trainer(self) -> Path:
        return self.root / "trainer"

    @property
    def exports(self) -> Path:
        return self.trainer / "datasets"

    @property
    def jobs(self) -> Path:
        return self.trainer / "jobs"

    @property
    def cache(self) -> Path:
        return self.trainer / "cache"

    @property
    def loras(self) -> Path:
        return self.trainer / "loras"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def db_path(self) -> Path:
        return self.root / "studio.db"

    @property
    def state(self) -> Path:
        """Small status files shared by the services (model download progress, secrets)."""
        return self.root / ".studio"

    @property
    def model_status_file(self) -> Path:
        return self.state / "models-status.json"

    @property
    def comfyui_loras(self) -> Path | None:
        folder = self.root / "ComfyUI" / "models" / "loras"
        return folder if (self.root / "ComfyUI").is_dir() else None

    def ensure(self) -> Workspace:
        for folder in (self.models, self.datasets, self.uploads, self.exports, self.jobs, self.cache,
                       self.loras, self.logs, self.state):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(self.state, 0o700)
        except OSError:
            pass
        return self

    def dataset_dir(self, dataset_id: str) -> Path:
        return confined(self.datasets, safe_name(dataset_id))

    def export_dir(self, name: str) -> Path:
        return confined(self.exports, safe_name(name))

    def job_dir(self, job_id: str) -> Path:
        return confined(self.jobs, safe_name(job_id))
