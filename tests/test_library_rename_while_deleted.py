"""Two tabs: one deletes a library file while the other renames it. The rename used to answer 500 (the file was gone
between its check and the move); it says the file went, in a sentence, and nothing appears under the new name."""

from __future__ import annotations

from tests.test_library_edit import _add, studio  # noqa: F401


def test_a_file_deleted_while_it_is_renamed_is_said_to_be_gone(studio, monkeypatch):  # noqa: F811
    import trainer.renders_api

    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    path = _add(studio, "ink.safetensors")
    real = trainer.renders_api.library_renders

    def deleted_meanwhile(name, *args, **kwargs):  # the other tab's Delete lands while this rename runs
        path.unlink(missing_ok=True)
        (space.comfyui_loras / "ink.safetensors").unlink(missing_ok=True)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(trainer.renders_api, "library_renders", deleted_meanwhile)
    answer = client.patch("/api/library/files/ink.safetensors", json={"name": "ink-v2"})
    assert answer.status_code == 404, answer.data[:300]
    assert "was deleted or renamed meanwhile" in answer.get_json()["error"]
    assert not list(space.loras.glob("*.safetensors")) and not list(space.comfyui_loras.glob("*.safetensors"))


def test_the_move_itself_meeting_a_vanished_file_says_so(tmp_path):
    import pytest

    from studio.web import ApiError
    from trainer.library_edit import _move

    for target in ("gone-v2.safetensors", "GONE.safetensors"):  # a new name, and a change of case alone
        with pytest.raises(ApiError) as raised:
            _move(tmp_path / "gone.safetensors", tmp_path / target)
        assert raised.value.status == 404 and "deleted or renamed meanwhile" in str(raised.value)
