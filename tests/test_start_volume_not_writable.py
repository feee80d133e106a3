"""A pod whose volume (/workspace) cannot be written keeps everything on the container's disk: every page says so
(the work would be lost at the pod's stop without a word), and runpod_start.sh says it in the pod's log."""

from __future__ import annotations

import re
import subprocess

import app as datasets_app
import trainer
from studio import web
from tests.helpers import REPO


def test_every_page_says_the_volume_cannot_be_written(make_settings, tmp_path, monkeypatch):
    volume = tmp_path / "workspace"
    volume.mkdir()
    monkeypatch.setattr(web, "POD_VOLUME", volume)
    # a read-only mount: root (these tests' user) may write anywhere a mode forbids, so the check stands in for it
    monkeypatch.setattr(web, "volume_writable", lambda path: False)
    settings = make_settings()
    for client in (datasets_app.create_app(settings).test_client(), trainer.create_app(settings).test_client()):
        page = client.get("/").get_data(as_text=True)
        assert 'id="volume-banner"' in page or "volume-banner" in page
        assert f"{volume} (the pod&#39;s volume) cannot be written" in page
        assert "lost when the pod stops" in page
    monkeypatch.setattr(web, "volume_writable", lambda path: True)
    assert "volume-banner" not in datasets_app.create_app(settings).test_client().get("/").get_data(as_text=True)


def test_no_banner_when_the_studio_lives_on_the_volume_or_there_is_none(make_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(web, "volume_writable", lambda path: False)
    monkeypatch.setattr(web, "POD_VOLUME", tmp_path / "no-such-volume")
    assert "volume-banner" not in datasets_app.create_app(make_settings()).test_client().get("/").get_data(as_text=True)
    settings = make_settings()
    monkeypatch.setattr(web, "POD_VOLUME", settings.root.parent)  # the studio's root is inside it
    assert "volume-banner" not in datasets_app.create_app(settings).test_client().get("/").get_data(as_text=True)


def test_the_start_script_warns_in_the_pods_log(tmp_path):
    script = (REPO / "runpod_start.sh").read_text()
    block = script[script.index("# ---- where things live"):script.index('mkdir -p "$STUDIO_ROOT"')]
    volume = tmp_path / "volume"
    volume.mkdir()
    block = re.sub(r"(?<!REPO)/workspace", str(volume), block)
    # `[ -w DIR ]` is false for a read-only mount (root, these tests' user, may write where a mode forbids)
    read_only = ('[() { local a="$*"; if [[ "$a" == *"-w $VOL ]" ]]; then [[ "$a" == "!"* ]]; return; fi; '
                 'builtin [ "$@"; }\n')
    run = subprocess.run(["bash", "-c", read_only + block + '\necho "root=$STUDIO_ROOT"'], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "REPO": "/tmp/repo", "VOL": str(volume)})
    assert "root=/tmp/repo/workspace" in run.stdout, run
    assert "cannot be written" in run.stderr and "lost when the pod stops" in run.stderr
