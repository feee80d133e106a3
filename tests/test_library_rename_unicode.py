"""A library file named in another script (an upload keeps 猫-スタイル-é.safetensors as it was named) is renamed to a
name in that script: "猫-スタイル-v2" used to become v2.safetensors without a word (every letter outside A-Z dropped),
and "猫 ü" was refused as having "no letter or digit"."""

from __future__ import annotations

import unicodedata

from tests.test_library_edit import _add, studio  # noqa: F401


def test_a_unicode_name_keeps_its_letters(studio):  # noqa: F811
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    path = _add(studio, "猫-スタイル-é.safetensors")
    data = path.read_bytes()
    answer = client.patch(f"/api/library/files/{path.name}", json={"name": "猫 スタイル é v2!"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["file"] == "猫-スタイル-é-v2.safetensors"
    assert (space.loras / "猫-スタイル-é-v2.safetensors").read_bytes() == data and not path.exists()
    assert (space.comfyui_loras / "猫-スタイル-é-v2.safetensors").is_file()
    answer = client.patch("/api/library/files/猫-スタイル-é-v2.safetensors", json={"name": "猫 ü"})
    assert answer.status_code == 200 and answer.get_json()["file"] == "猫-ü.safetensors", answer.get_json()


def test_an_accent_typed_as_two_characters_is_one_letter(studio):  # noqa: F811
    client = studio.test_client()
    path = _add(studio, "ink.safetensors")
    typed = unicodedata.normalize("NFD", "café")  # e + combining acute, as a Mac types it
    answer = client.patch(f"/api/library/files/{path.name}", json={"name": typed})
    assert answer.status_code == 200 and answer.get_json()["file"] == "café.safetensors", answer.get_json()


def test_a_name_of_signs_alone_is_still_refused(studio):  # noqa: F811
    client = studio.test_client()
    path = _add(studio, "ink.safetensors")
    for wanted in ("!!!", "___", "・・", "--.."):
        answer = client.patch(f"/api/library/files/{path.name}", json={"name": wanted})
        assert answer.status_code == 422 and "has no letter or digit" in answer.get_json()["error"], wanted
    assert path.is_file()
