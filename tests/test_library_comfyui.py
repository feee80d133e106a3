"""ComfyUI's own LoRAs are never replaced by the library's copies: a finished job, a merge, a file back from Recently
deleted or an upload whose name is one of ComfyUI's own files leaves that file as it is (the library's stays out of
ComfyUI's folder, or takes another name), while a job trained further still replaces its own earlier copy there; the
same file added twice is one file."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import trainer
from tests.test_library_convert import _card, _copied_in
from tests.test_library_edit import _lora
from tests.test_library_upload import _send
from tests.test_lora_import import wait_import
from trainer import library

THEIRS = b"ComfyUI's own file"


@pytest.fixture
def studio(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1, UPLOAD_CHUNK_MB=1))  # as tests.test_library_upload's
    space = app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    (space.root / "ComfyUI" / "models" / "loras").mkdir(parents=True)
    return app


def test_a_finished_job_never_replaces_comfyuis_own_file_but_replaces_its_own_earlier_copy(studio, tmp_path):
    space = studio.config["STUDIO_WORKSPACE"]
    job = SimpleNamespace(id="job1")
    (space.comfyui_loras / "cat.safetensors").write_bytes(THEIRS)
    first = tmp_path / "cat.safetensors"
    first.write_bytes(_lora({"v": "1"}))
    assert library.publish(space, job, first) == [space.loras / "cat-job1.safetensors",
                                                  space.comfyui_loras / "cat-job1.safetensors"]  # a name of its own
    assert (space.comfyui_loras / "cat.safetensors").read_bytes() == THEIRS
    assert library.publish(space, job, first, own="cat.safetensors") == [space.loras / "cat.safetensors"]
    assert (space.comfyui_loras / "cat.safetensors").read_bytes() == THEIRS  # a checkpoint's name, say: left out
    dog = tmp_path / "dog.safetensors"
    dog.write_bytes(_lora({"v": "1"}))
    assert len(library.publish(space, job, dog)) == 2  # placed in both
    dog.write_bytes(_lora({"v": "2"}))  # trained further: the same library name, its ComfyUI copy follows
    placed = library.publish(space, job, dog, own="dog.safetensors")
    assert placed == [space.loras / "dog.safetensors", space.comfyui_loras / "dog.safetensors"]
    assert (space.comfyui_loras / "dog.safetensors").read_bytes() == dog.read_bytes()


def test_a_merge_named_as_comfyuis_own_file_is_refused(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    _copied_in(studio, "a.safetensors", _lora({"n": "a"}))
    _copied_in(studio, "b.safetensors", _lora({"n": "b"}))
    (space.comfyui_loras / "Both.safetensors").write_bytes(THEIRS)
    answer = client.post("/api/library/merge", json={"files": [{"file": "a.safetensors"}, {"file": "b.safetensors"}],
                                                     "name": "both"})
    assert answer.status_code == 409 and "ComfyUI's loras has a file of its own named Both.safetensors" in \
        answer.get_json()["error"]
    assert not (space.loras / "both.safetensors").exists()


def test_a_file_back_from_recently_deleted_leaves_comfyuis_own_file_of_its_name(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    _copied_in(studio, "gone.safetensors", _lora())
    assert client.delete("/api/library/files/gone.safetensors").status_code == 200
    (space.comfyui_loras / "gone.safetensors").write_bytes(THEIRS)  # meanwhile ComfyUI got a file of that name
    entry = client.get("/api/trash").get_json()["entries"][0]
    assert client.post(f"/api/trash/{entry['id']}/restore").status_code == 200
    assert (space.loras / "gone.safetensors").read_bytes() == _lora()
    assert (space.comfyui_loras / "gone.safetensors").read_bytes() == THEIRS


def test_the_same_file_uploaded_twice_is_one_file_and_keeps_its_name_and_card(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    _copied_in(studio, "mine.safetensors", _lora())
    client.patch("/api/library/files/mine.safetensors", json={"trigger_word": "mnx"})
    sid = _send(client, "Same Again.safetensors", _lora())
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "completed", job
    assert job["message"] == ("Same Again.safetensors is in the library already, as mine.safetensors (the same file, "
                              "rank 4): nothing was added.")
    assert sorted(p.name for p in space.loras.glob("*.safetensors")) == ["mine.safetensors"]
    assert _card(client, "mine.safetensors")["trigger_word"] == "mnx"  # its record kept
    assert client.get(f"/api/library/uploads/{sid}").status_code == 404  # the chunks went


def test_comfyuis_own_z_image_loras_are_listed_and_added_to_the_library_with_one_click(studio):
    from tests.test_library_convert import _convert, _kohya
    from tests.test_lora_import import _lora as sdxl_or_not

    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    comfy = space.comfyui_loras
    (comfy / "ours.safetensors").write_bytes(_lora({"n": "ours"}))
    (comfy / "zimage").mkdir()
    kohya, _change = _kohya()
    (comfy / "zimage" / "kohya.safetensors").write_bytes(kohya)  # a subfolder, as ComfyUI lists it
    (comfy / "sdxl.safetensors").write_bytes(sdxl_or_not("lora_unet_input_blocks.0.proj"))
    (comfy / "junk.safetensors").write_bytes(b"not a safetensors file")
    _copied_in(studio, "placed.safetensors", _lora({"n": "placed"}))  # the library's own copy there
    (comfy / "placed again.safetensors").write_bytes(_lora({"n": "placed"}))  # the same bytes: the library has it
    (comfy / "elsewhere.safetensors").symlink_to(space.root / "trainer" / "loras" / "placed.safetensors")  # not ours
    listed = client.get("/api/library/comfyui").get_json()
    assert listed["dir"] == str(comfy) and listed["others"] == 2
    assert [(f["file"], f["layout"]) for f in listed["files"]] == [("ours.safetensors", None),
                                                                    ("zimage/kohya.safetensors", "kohya's key names")]
    added = client.post("/api/library/comfyui/zimage/kohya.safetensors/add")
    assert added.status_code == 201 and added.get_json() == {"file": "kohya.safetensors", "layout": "kohya's key names"}
    assert (space.loras / "kohya.safetensors").read_bytes() == kohya
    card = _card(client, "kohya.safetensors")
    assert card["foreign"] == "kohya's key names"  # its card offers Convert
    assert card["metadata"]["comfyui_file"] == "zimage/kohya.safetensors"  # and says where it came from
    assert _convert(client, "kohya.safetensors")["status"] == "completed"
    assert (comfy / "zimage" / "kohya.safetensors").read_bytes() == kohya  # ComfyUI's own file, left as it is
    assert [f["file"] for f in client.get("/api/library/comfyui").get_json()["files"]] == ["ours.safetensors"]
    (space.loras / "ours.safetensors").write_bytes(b"another file of that name")
    assert client.post("/api/library/comfyui/ours.safetensors/add").get_json()["file"] == "ours-2.safetensors"
    again = client.post("/api/library/comfyui/ours.safetensors/add")
    assert again.status_code == 409 and "in the library already, as ours-2.safetensors" in again.get_json()["error"]
    refused = client.post("/api/library/comfyui/sdxl.safetensors/add")
    assert refused.status_code == 422 and "not a LoRA of Z-Image's layers" in refused.get_json()["error"]
    assert client.post("/api/library/comfyui/none.safetensors/add").status_code == 404
    assert client.post("/api/library/comfyui/..%2f..%2fstudio.db/add").status_code in (400, 404)
    assert client.post("/api/library/comfyui/../trainer/loras/placed.safetensors/add").status_code in (400, 404)


def test_without_comfyui_there_is_nothing_to_add_from(studio):
    import shutil

    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    shutil.rmtree(space.root / "ComfyUI")
    assert client.get("/api/library/comfyui").get_json() == {"dir": None, "files": [], "others": 0}
    answer = client.post("/api/library/comfyui/x.safetensors/add")
    assert answer.status_code == 404 and "ComfyUI is not installed" in answer.get_json()["error"]
