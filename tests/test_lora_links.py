"""LoRA links that are pages, not files. Civitai, against a stand-in for its API and downloads: a model's page or a
download link is asked about first; a LoRA for another base model or a checkpoint is refused before anything
downloads; the version's model file downloads (with CIVITAI_TOKEN when set) and carries its trigger words into the
library; an anonymous download Civitai refuses says what to do. A Hugging Face model repo's page, against the hub's
stand-in: its one .safetensors file downloads, and a repo of several or none says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

import trainer
from studio.jobs import JobError
from tests.helpers import files_handler, serving
from tests.test_lora_import import _import
from trainer.civitai import lookup
from trainer.lora_resize import encode

OCTETS = "application/octet-stream"
LORA = encode({"diffusion_model.layers.0.attention.to_q.lora_A.weight": np.ones((4, 16), np.float32),
               "diffusion_model.layers.0.attention.to_q.lora_B.weight": np.ones((16, 4), np.float32)}, "BF16", {})
SIGNED_IN_ONLY = "/api/download/models/999"


def _version(base: str, version_id: int, base_model: str = "ZImageTurbo", kind: str = "LORA") -> dict:
    return {"id": version_id, "modelId": 123, "name": "v2", "baseModel": base_model, "trainedWords": ["zkw style,"],
            "model": {"name": "Cat Style", "type": kind},
            "files": [{"name": "data.zip", "type": "Training Data", "downloadUrl": f"{base}/training-data"},
                      {"name": "cat_style_v2.safetensors", "type": "Model", "primary": True,
                       "downloadUrl": f"{base}/api/download/models/{version_id}?type=Model&format=SafeTensor"}]}


@pytest.fixture(scope="module")
def civitai():
    files: dict = {}
    handler = files_handler(files)

    class Civitai(handler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            if self.path == SIGNED_IN_ONLY or self.path.startswith(f"{SIGNED_IN_ONLY}?type"):
                Civitai.seen.append(self.path)
                self.send_error(401, "Unauthorized")
                return
            super().do_GET()

    with serving(Civitai) as base:
        def answer(path: str, value: dict) -> None:
            files[path] = ("application/json", {}, json.dumps(value).encode())

        named = {"Content-Disposition": 'attachment; filename="cat_style_v2.safetensors"'}
        answer("/api/v1/model-versions/456", _version(base, 456))
        listed = {key: value for key, value in _version(base, 456).items() if key != "model"}
        answer("/api/v1/models/123", {"id": 123, "name": "Cat Style", "type": "LORA", "modelVersions": [listed]})
        files["/api/download/models/456?type=Model&format=SafeTensor"] = (OCTETS, named, LORA)
        files["/api/download/models/456"] = (OCTETS, named, LORA)
        answer("/api/v1/model-versions/789", _version(base, 789, base_model="SDXL 1.0"))
        answer("/api/v1/model-versions/321", _version(base, 321, kind="Checkpoint"))
        answer("/api/v1/model-versions/999", {**_version(base, 999), "files": []})
        files[f"{SIGNED_IN_ONLY}?token=sekrit"] = (OCTETS, named, LORA)
        elsewhere = _version(base, 555)
        elsewhere["files"][1]["downloadUrl"] = "https://cdn.example/cat.safetensors"
        answer("/api/v1/model-versions/555", elsewhere)
        answer("/api/v1/model-versions/556", {"name": "no id"})
        yield base, Civitai


@pytest.fixture
def studio(make_settings, civitai):
    def make(**env):
        app = trainer.create_app(make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=1, CIVITAI_URL=civitai[0], **env))
        return app.test_client(), app.config["STUDIO_WORKSPACE"]
    return make


@pytest.mark.parametrize("link", ["/models/123/cat-style", "/models/123/cat-style?modelVersionId=456",
                                  "/api/download/models/456"])
def test_a_civitai_lora_lands_with_its_trigger_words(studio, civitai, link):
    client, space = studio()
    job = _import(client, civitai[0] + link)
    assert job["status"] == "completed", job
    assert job["message"] == ("Added “Cat Style (v2)” from Civitai as cat_style_v2.safetensors (rank 4; trigger "
                              "zkw style) to the library.")
    assert job["result"]["civitai"]["page"] == f"{civitai[0]}/models/123?modelVersionId=456"
    path = space.loras / "cat_style_v2.safetensors"
    assert path.read_bytes() == LORA  # byte for byte: its hash still finds it on Civitai and in LoRA managers
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == path.name)
    assert card["trigger_word"] == "zkw style" and card["metadata"]["modelspec.title"] == "Cat Style (v2)"
    assert card["metadata"]["civitai_url"] == f"{civitai[0]}/models/123?modelVersionId=456"
    # the trigger word stands for [trigger] when it is tried
    listing = client.get(f"/api/library/files/{path.name}/renders").get_json()
    assert listing["defaults"]["trigger_word"] == "zkw style"
    assert "/training-data" not in civitai[1].seen  # the version's model file, not its training data
    # its try page says where it came from
    page = client.get(f"/library/try/{path.name}").get_data(as_text=True)
    assert f'from <a href="{civitai[0]}/models/123?modelVersionId=456"' in page
    assert "Cat Style (v2)</a> on Civitai" in page


@pytest.mark.parametrize("version, words", [
    (789, "“Cat Style (v2)” is a LoRA for SDXL 1.0 on Civitai, not for Z-Image"),
    (321, "“Cat Style (v2)” is a Checkpoint on Civitai, not a LoRA"),
])
def test_another_models_lora_or_a_checkpoint_is_refused_before_it_downloads(studio, civitai, version, words):
    client, space = studio()
    job = _import(client, f"{civitai[0]}/api/download/models/{version}")
    assert job["status"] == "failed" and words in job["error"], job
    assert not any(seen.startswith(f"/api/download/models/{version}") for seen in civitai[1].seen)
    assert not list(space.loras.glob("*.safetensors"))


def test_a_download_civitai_keeps_for_signed_in_accounts_needs_the_token(studio, civitai):
    client, space = studio()
    job = _import(client, f"{civitai[0]}{SIGNED_IN_ONLY}")
    assert job["status"] == "failed" and "set CIVITAI_TOKEN to an API key of yours" in job["error"], job
    client, space = studio(CIVITAI_TOKEN="sekrit")
    job = _import(client, f"{civitai[0]}{SIGNED_IN_ONLY}")
    assert job["status"] == "completed", job
    assert f"{SIGNED_IN_ONLY}?token=sekrit" in civitai[1].seen
    assert "sekrit" not in json.dumps(client.get("/api/library/imports").get_json())  # the key is never shown


def test_a_key_pasted_in_the_link_itself_is_used_and_never_recorded(studio, civitai):
    client, space = studio()  # no CIVITAI_TOKEN: the link Civitai's site gives, with the key in it
    job = _import(client, f"{civitai[0]}{SIGNED_IN_ONLY}?token=sekrit")
    assert job["status"] == "completed", job
    assert f"{SIGNED_IN_ONLY}?token=sekrit" in civitai[1].seen
    assert job["config"]["url"] == f"{civitai[0]}{SIGNED_IN_ONLY}" and job["result"]["url"] == job["config"]["url"]
    assert "sekrit" not in json.dumps(client.get("/api/library/imports").get_json())
    assert "sekrit" not in json.dumps(client.get("/api/library").get_json())
    sources = list((space.loras / ".sources").glob("*.json"))
    assert sources and not any("sekrit" in path.read_text() for path in sources)


@pytest.mark.parametrize("link, shown", [
    ("https://civitai.com/api/download/models/1?type=Model&token=abc", "https://civitai.com/api/download/models/1?type=Model"),
    ("https://b.example/x.zip?X-Amz-Signature=s&X-Amz-Credential=c&v=1", "https://b.example/x.zip?v=1"),
    ("https://me:pw@host.example/a.safetensors", "https://host.example/a.safetensors"),
    ("https://www.dropbox.com/s/abc/x.zip?dl=1", "https://www.dropbox.com/s/abc/x.zip?dl=1"),
])
def test_a_link_is_shown_without_its_credentials(link, shown):
    from app.link_fetch import shown_link

    assert shown_link(link) == shown


def test_the_api_key_goes_to_civitai_only_and_an_odd_answer_is_said(civitai):
    found = lookup(f"{civitai[0]}/models/123?modelVersionId=555", api_base=civitai[0], token="sekrit",
                   allow_private=True)
    assert found.download == "https://cdn.example/cat.safetensors"  # not sent to another host
    found = lookup(f"{civitai[0]}/models/123?modelVersionId=456", api_base=civitai[0], token="sekrit",
                   allow_private=True)
    assert found.download.endswith("/api/download/models/456?type=Model&format=SafeTensor&token=sekrit")
    with pytest.raises(JobError, match="names no version to download"):
        lookup(f"{civitai[0]}/api/download/models/556", api_base=civitai[0], token=None, allow_private=True)
    with pytest.raises(JobError, match="Civitai answered 404 when asked about version 404"):
        lookup(f"{civitai[0]}/api/download/models/404", api_base=civitai[0], token=None, allow_private=True)


def test_links_of_other_hosts_are_not_asked_about(civitai):
    assert lookup("https://huggingface.co/you/lora/resolve/main/x.safetensors", api_base=civitai[0], token=None,
                  allow_private=True) is None
    assert lookup(f"{civitai[0]}/user/someone", api_base=civitai[0], token=None, allow_private=True) is None


def test_where_a_file_came_from_goes_with_it(studio, civitai):
    """Its record follows it into a smaller copy, into Recently deleted and back; its own metadata wins over it."""
    client, space = studio()
    _import(client, f"{civitai[0]}/api/download/models/456")
    path = space.loras / "cat_style_v2.safetensors"
    own = space.loras / "own-words.safetensors"
    own.write_bytes(encode({"diffusion_model.layers.0.attention.to_q.lora_A.weight": np.ones((4, 16), np.float32),
                            "diffusion_model.layers.0.attention.to_q.lora_B.weight": np.ones((16, 4), np.float32)},
                           "F32", {"modelspec.trigger_phrase": "own words"}))
    (space.loras / ".sources").mkdir(exist_ok=True)
    (space.loras / ".sources" / f"{own.name}.json").write_text('{"url": "https://x.example/a", "trigger_words": ["b"]}')
    cards = {e["file"]: e for e in client.get("/api/library").get_json()["loras"]}
    assert cards[own.name]["trigger_word"] == "own words" and cards[own.name]["metadata"]["source_url"] == (
        "https://x.example/a")
    assert client.post(f"/api/library/files/{path.name}/resize", json={"rank": 2}).status_code == 201
    cards = {e["file"]: e for e in client.get("/api/library").get_json()["loras"]}
    assert cards["cat_style_v2-r2.safetensors"]["trigger_word"] == "zkw style"
    entry = client.delete(f"/api/library/files/{path.name}").get_json()["trash"]
    assert not (space.loras / ".sources" / f"{path.name}.json").exists()
    client.post(f"/api/trash/{entry}/restore")
    assert path.read_bytes() == LORA
    assert next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == path.name)[
        "trigger_word"] == "zkw style"


# -- a Hugging Face model repo's page ----------------------------------------------------------------------
@pytest.fixture
def hub(monkeypatch):
    from tests.fake_hub import FakeHub

    with FakeHub() as server:
        server.add("me/cat-lora", {"cat.safetensors": LORA, "README.md": b"# Cat"})
        server.add("me/many", {"a.safetensors": LORA, "b.safetensors": LORA})
        server.add("me/nested", {"z.safetensors": LORA, "old/x.safetensors": LORA, "old/y.safetensors": LORA})
        server.add("me/versions", {"v1/a.safetensors": LORA, "v2/b.safetensors": LORA})
        server.add("me/empty", {"README.md": b"nothing here"})
        server.add("me/gated", {"g.safetensors": LORA})
        server.gated.add("me/gated")
        server.add("me/private", {"p.safetensors": LORA})
        server.tokens["me/private"] = "hf_reader"
        yield server


@pytest.mark.parametrize("path, file", [("/me/cat-lora", "cat.safetensors"), ("/me/nested", "z.safetensors"),
                                        ("/me/versions/tree/main/v2", "b.safetensors")])
def test_a_hugging_face_repo_page_gives_its_lora(make_settings, hub, path, file):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=1, HF_ENDPOINT=hub.url))
    job = _import(app.test_client(), hub.url + path)
    assert job["status"] == "completed", job
    assert job["result"]["file"] == file and (app.config["STUDIO_WORKSPACE"].loras / file).read_bytes() == LORA
    card = next(e for e in app.test_client().get("/api/library").get_json()["loras"] if e["file"] == file)
    assert card["metadata"]["source_url"] == hub.url + path  # the card links back to where it came from


@pytest.mark.parametrize("path, words", [
    ("/me/many", "holds several .safetensors files (a.safetensors, b.safetensors): open the one you want"),
    ("/me/nested/tree/main/old", "holds several .safetensors files (old/x.safetensors, old/y.safetensors)"),
    ("/me/empty", "me/empty on Hugging Face holds no .safetensors file"),
    ("/me/gated", "me/gated on Hugging Face is private or gated"),
    ("/me/missing", "Hugging Face answered 404 for the repo me/missing"),
])
def test_a_repo_page_without_one_lora_says_what_to_do(make_settings, hub, path, words):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=1, HF_ENDPOINT=hub.url))
    job = _import(app.test_client(), hub.url + path)
    assert job["status"] == "failed" and words in job["error"], job


def test_a_private_repo_opens_with_the_pods_token_sent_to_the_hub_only(make_settings, hub):
    def imported(path: str, **env) -> dict:
        app = trainer.create_app(make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=1, HF_ENDPOINT=hub.url, **env))
        return _import(app.test_client(), hub.url + path)

    assert "set HF_TOKEN to a token with read access to it" in imported("/me/private")["error"]
    assert "does not open it" in imported("/me/private", HF_TOKEN="hf_other")["error"]
    assert "This file on Hugging Face is private or gated: set HF_TOKEN" in imported(
        "/me/private/resolve/main/p.safetensors")["error"]
    job = imported("/me/private", HF_TOKEN="hf_reader")
    assert job["status"] == "completed" and job["result"]["file"] == "p.safetensors", job
    assert imported("/me/private/resolve/main/p.safetensors", HF_TOKEN="hf_reader")["status"] == "completed"
    assert {r["auth"] for r in hub.requests if r["path"].startswith("/me/private/")} >= {"Bearer hf_reader"}


def test_the_token_goes_to_the_hub_only():
    from app.link_fetch import Credentials
    from trainer.hf_lora_link import credentials

    given = credentials("http://127.0.0.1:9", "hf_x")
    assert given.for_host("huggingface.co") == {"Authorization": "Bearer hf_x"} == given.for_host("127.0.0.1")
    assert given.for_host("cdn-lfs.hf.co") == {} and given.for_host("evil.example") == {}
    assert credentials(None, None) is None and "hf_x" not in repr(Credentials(frozenset(), "Bearer hf_x"))


def test_which_hugging_face_links_are_repo_pages():
    from trainer.hf_lora_link import repo_page

    assert repo_page("https://huggingface.co/me/cat-lora", None) == ("me/cat-lora", "main", "")
    assert repo_page("https://hf.co/me/cat-lora/tree/v2/loras/", None) == ("me/cat-lora", "v2", "loras")
    for other in ("https://huggingface.co/datasets/me/cats", "https://huggingface.co/me/cat-lora/blob/main/a.safetensors",
                  "https://huggingface.co/me", "https://example.com/me/cat-lora", "https://huggingface.co/spaces/me/x"):
        assert repo_page(other, None) is None, other
