"""INSTALL_COMFYUI=1 clones ComfyUI at the release the studio was checked with (COMFYUI_REF), not whatever its
newest code is that day; a tag that is gone takes the newest code with a line saying so, and a ComfyUI already on the
volume is kept as it is. A local repository stands in for GitHub."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _git(folder: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


@pytest.fixture
def comfyui_repo(tmp_path) -> Path:
    """A ComfyUI with a release tagged as the studio pins it, and newer code after it."""
    origin = tmp_path / "ComfyUI-origin"
    origin.mkdir()
    _git(origin, "init", "-q", "-b", "master")
    (origin / "requirements.txt").write_text("")
    (origin / "main.py").write_text("RELEASE = 'pinned'\n")
    _git(origin, "add", ".")
    _git(origin, "commit", "-q", "-m", "release")
    pinned = subprocess.run(["bash", "-c", "source scripts/comfyui.sh; echo $COMFYUI_PINNED"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.strip()
    _git(origin, "tag", pinned)
    (origin / "main.py").write_text("RELEASE = 'newest'\n")
    _git(origin, "commit", "-q", "-am", "newer")
    return origin


def _install(tmp_path: Path, origin: Path, **env) -> subprocess.CompletedProcess:
    script = ('log() { printf "[start] %s\\n" "$*"; }; source scripts/comfyui.sh; '
              'install_comfyui && echo "$COMFYUI_PYTHON"')
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
                          env={**os.environ, "STUDIO_ROOT": str(tmp_path / "workspace"),
                               "COMFY_VENV": str(tmp_path / "comfyui-venv"), "COMFYUI_REPO": str(origin), **env})


def test_the_pinned_release_is_cloned_and_kept(tmp_path, comfyui_repo):
    done = _install(tmp_path, comfyui_repo)
    comfyui = tmp_path / "workspace" / "ComfyUI"
    assert (comfyui / "main.py").read_text() == "RELEASE = 'pinned'\n"
    assert (comfyui / "models" / "loras").is_dir()
    assert done.stdout.strip().endswith("comfyui-venv/bin/python") and "newest code" not in done.stdout
    _install(tmp_path, comfyui_repo, COMFYUI_REF="")  # a restart: what is on the volume stays
    assert (comfyui / "main.py").read_text() == "RELEASE = 'pinned'\n"


def test_a_tag_that_is_gone_takes_the_newest_code_and_says_so(tmp_path, comfyui_repo):
    done = _install(tmp_path, comfyui_repo, COMFYUI_REF="v0.0.0-gone")
    assert f"ComfyUI v0.0.0-gone is not in {comfyui_repo}: taking its newest code instead" in done.stdout
    assert (tmp_path / "workspace" / "ComfyUI" / "main.py").read_text() == "RELEASE = 'newest'\n"


def test_an_empty_ref_takes_the_newest_code(tmp_path, comfyui_repo):
    done = _install(tmp_path, comfyui_repo, COMFYUI_REF="")
    assert "taking its newest code" not in done.stdout
    assert (tmp_path / "workspace" / "ComfyUI" / "main.py").read_text() == "RELEASE = 'newest'\n"
