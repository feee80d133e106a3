"""Add a LoRA to the library from this computer: the file goes up in chunks (a chunk lost with a dropped connection
is asked for again), then one job puts it together, converts another trainer's names (a LoHa to a LoRA), checks it
and places it in the library and ComfyUI's loras. What is not a LoRA of this model is refused and leaves nothing; a
session is the library's or a dataset's, never both."""

from __future__ import annotations

import numpy as np
import pytest

import trainer
from tests.test_loha_lora import _loha
from tests.test_lora_import import wait_import
from trainer.lora_resize import encode

CHUNK = 1 << 20


@pytest.fixture
def studio(make_settings):
    app = trainer.create_app(make_settings(STUDIO_DEMO=1, UPLOAD_CHUNK_MB=1, MAX_UPLOAD_MB=3))
    (app.config["STUDIO_WORKSPACE"].root / "ComfyUI").mkdir()
    return app


def _big_lora() -> bytes:
    """A rank-8 LoRA in this studio's names, a little over 1 MB: two chunks."""
    return encode({"diffusion_model.layers.0.feed_forward.w1.lora_A.weight": np.ones((8, 40_000), np.float32),
                   "diffusion_model.layers.0.feed_forward.w1.lora_B.weight": np.ones((16, 8), np.float32)},
                  "F32", {"modelspec.trigger_phrase": "zkw"})


def _send(client, name: str, data: bytes, skip: tuple[int, ...] = ()) -> str:
    made = client.post("/api/library/uploads", json={"filename": name, "size": len(data)})
    assert made.status_code == 201, made.get_json()
    session = made.get_json()
    assert session["chunk_size"] == CHUNK and session["missing"] == list(range(session["chunks"]))
    for n in range(session["chunks"]):
        if n not in skip:
            put = client.put(f"/api/library/uploads/{session['id']}/chunks/{n}", data=data[n * CHUNK:(n + 1) * CHUNK])
            assert put.status_code == 200, put.get_json()
    return session["id"]


def test_a_lora_uploaded_in_chunks_lands_in_the_library_byte_for_byte(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    data = _big_lora()
    sid = _send(client, "My Style v2.safetensors", data, skip=(0,))  # chunk 0 lost with a dropped connection
    url = f"/api/library/uploads/{sid}"
    assert client.get(url).get_json()["missing"] == [0]
    refused = client.post(f"{url}/complete")
    assert refused.status_code == 409 and "missing 1 chunk" in refused.get_json()["error"]
    assert client.put(f"{url}/chunks/0", data=data[:CHUNK - 1]).status_code == 422  # a short chunk is not taken
    assert client.put(f"{url}/chunks/0", data=data[:CHUNK]).status_code == 200
    first, again = client.post(f"{url}/complete"), client.post(f"{url}/complete")  # a double click
    assert first.status_code == 202
    job = wait_import(client, first.get_json()["job"]["id"])
    assert job["status"] == "completed", job
    assert again.status_code == 404 or again.get_json()["job"]["id"] == job["id"]  # never a second file
    assert job["message"] == "Added My-Style-v2.safetensors (rank 8) to the library."
    assert (space.loras / "My-Style-v2.safetensors").read_bytes() == data
    assert (space.comfyui_loras / "My-Style-v2.safetensors").is_file()
    assert sorted(p.name for p in space.loras.glob("*.safetensors")) == ["My-Style-v2.safetensors"]
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == "My-Style-v2.safetensors")
    assert card["rank"] == 8 and card["trigger_word"] == "zkw"
    assert client.get(url).status_code == 404  # the session's chunks are gone
    assert not list((space.loras / ".incoming").iterdir())


def test_an_uploaded_loha_becomes_a_lora(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    data = encode(_loha(np.random.default_rng(7), dim=2)[0], "BF16", {})
    sid = _send(client, "ink.safetensors", data)
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "completed", job
    assert job["message"] == ("Added ink.safetensors (rank 4, converted from kohya's key names and a LyCORIS LoHa of "
                              "dim 2, exactly) to the library.")
    assert (space.loras / "ink.safetensors").is_file()


def test_a_hostile_file_name_lands_inside_the_library_under_a_safe_name(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    sid = _send(client, "../../../etc/cron.d/evil name.safetensors", _big_lora())
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "completed" and job["result"]["file"] == "evil-name.safetensors", job
    assert [p.name for p in space.loras.glob("*.safetensors")] == ["evil-name.safetensors"]
    assert not (space.root / "etc").exists()


def test_a_full_disk_keeps_the_chunks_and_the_same_session_completes_later(studio, monkeypatch):
    import errno

    from studio import chunked

    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    sid = _send(client, "cat.safetensors", _big_lora())
    assemble = chunked.assemble

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(chunked, "assemble", full)
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "failed" and "disk" in job["error"].lower(), job
    assert client.get(f"/api/library/uploads/{sid}").get_json()["complete"]  # nothing to send again
    monkeypatch.setattr(chunked, "assemble", assemble)  # space freed
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "completed" and (space.loras / "cat.safetensors").is_file(), job


def test_what_is_not_a_lora_of_this_model_is_refused_and_leaves_nothing(studio):
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    sdxl = encode({"lora_unet_input_blocks_0_proj.lora_down.weight": np.ones((4, 16), np.float32),
                   "lora_unet_input_blocks_0_proj.lora_up.weight": np.ones((16, 4), np.float32)}, "F32", {})
    sid = _send(client, "sdxl.safetensors", sdxl)
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["status"] == "failed" and "not a LoRA of Z-Image's layers" in job["error"], job
    assert client.get(f"/api/library/uploads/{sid}").status_code == 404  # a refusal: sending it again would not help
    assert job["config"]["chunks_kept"] is False  # so the page offers no Try again
    sid = _send(client, "damaged.safetensors", b"\x00" * 64)
    job = wait_import(client, client.post(f"/api/library/uploads/{sid}/complete").get_json()["job"]["id"])
    assert job["error"] == "damaged.safetensors is not a .safetensors file (or it is damaged or cut short)."
    assert not list(space.loras.glob("*.safetensors")) and not list((space.loras / ".incoming").iterdir())


@pytest.mark.parametrize("body, status, words", [
    ({"filename": "cat.ckpt", "size": 10}, 415, "not a .safetensors file"),
    ({"filename": "cat.safetensors", "size": 0}, 422, "is empty"),
    ({"filename": "cat.safetensors", "size": "big"}, 422, "'size' must be"),
    ({"filename": "cat.safetensors", "size": 4 << 20}, 413, "over the limit of 3 MB (MAX_UPLOAD_MB)"),
    ({"filename": "", "size": 10}, 422, "needs a name"),
])
def test_a_session_that_cannot_be_a_lora_is_refused_at_once(studio, body, status, words):
    answer = studio.test_client().post("/api/library/uploads", json=body)
    assert answer.status_code == status and words in answer.get_json()["error"]


def test_a_dataset_session_is_not_the_librarys_and_a_bad_id_is_unknown(studio, make_settings):
    import app as datasets_app

    datasets = datasets_app.create_app(make_settings(UPLOAD_CHUNK_MB=1, MAX_UPLOAD_MB=3)).test_client()
    did = datasets.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    theirs = datasets.post(f"/api/datasets/{did}/uploads", json={"filename": "a.zip", "size": 10}).get_json()["id"]
    big = datasets.post(f"/api/datasets/{did}/uploads", json={"filename": "b.zip", "size": 4 << 20})
    assert big.status_code == 413 and "b.zip (4.0 MB) is over the limit of 3 MB" in big.get_json()["error"]
    client = studio.test_client()
    assert client.get(f"/api/library/uploads/{theirs}").status_code == 404
    assert client.put(f"/api/library/uploads/{theirs}/chunks/0", data=b"x" * 10).status_code == 404
    ours = _send(client, "a.safetensors", b"x" * 10)
    assert datasets.get(f"/api/datasets/{did}/uploads/{ours}").status_code == 404
    assert client.get("/api/library/uploads/..%2f..%2fstudio.db").status_code == 404
    assert client.delete(f"/api/library/uploads/{ours}").get_json() == {"aborted": ours}
    assert client.get(f"/api/library/uploads/{ours}").status_code == 404


def test_an_upload_the_disk_has_no_room_for_is_refused_before_a_chunk_goes(studio, monkeypatch, make_settings):
    """The library's and a dataset's alike (one session code)."""
    import app as datasets_app
    from studio import chunked

    monkeypatch.setattr(chunked, "free_bytes", lambda _root: 3_000_000)
    answer = studio.test_client().post("/api/library/uploads", json={"filename": "big.safetensors", "size": 2_000_000})
    assert answer.status_code == 507
    assert answer.get_json()["error"].startswith("big.safetensors (2.0 MB) needs 4.0 MB free on the pod's disk")
    assert "has 3.0 MB: free space (old training jobs" in answer.get_json()["error"]
    datasets = datasets_app.create_app(make_settings()).test_client()
    did = datasets.post("/api/datasets", json={"name": "t"}).get_json()["id"]
    answer = datasets.post(f"/api/datasets/{did}/uploads", json={"filename": "set.zip", "size": 2_000_000})
    assert answer.status_code == 507 and "set.zip (2.0 MB) needs 4.0 MB free" in answer.get_json()["error"]
