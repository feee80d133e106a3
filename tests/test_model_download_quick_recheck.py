"""A model already on disk is checked quickly: a models.txt line that gains a file does not make the fetcher hash
every file it verified before (tens of GB, minutes on a fresh pod), only the new one."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

from studio import fetch, hub_files
from studio.workspace import Workspace
from tests.test_fetch import FAST, hub, models_file  # noqa: F401 - the stand-in hub, fixtures


def test_a_line_that_gains_a_file_hashes_only_the_new_file(make_settings, hub, models_file, monkeypatch):
    settings = make_settings(HF_ENDPOINT=hub.url)
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    models_file.write_text(models_file.read_text().replace("vae/* Z-Image-Turbo", "vae/*,assets/* Z-Image-Turbo"))
    hashed = []
    real_hash_ok = hub_files._file_hash_ok

    def counting_hash_ok(path, remote):
        hashed.append(remote.path)
        return real_hash_ok(path, remote)

    monkeypatch.setattr(hub_files, "_file_hash_ok", counting_hash_ok)
    hub.requests.clear()
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    assert [r["path"].rsplit("/", 1)[1] for r in hub.file_requests("GET")] == ["big.png"]
    assert hashed == ["assets/big.png"]
    assert (Workspace(settings.root).models / "Z-Image-Turbo" / "assets" / "big.png").is_file()
    # and the record now vouches for the new line: the next start needs no network
    hub.requests.clear()
    assert fetch.run(settings, models_file, policy=FAST, progress_interval=0.05) == 0
    assert hub.requests == []
