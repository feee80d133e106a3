"""What an attacker who read the code tried, and what each must now get:

- a chunk number of Unicode digits ("²" passes str.isdigit(), int() refuses it): 422, not a 500;
- a .safetensors file whose `__metadata__` is a number, a list or nested JSON (safetensors itself refuses it): not a
  .safetensors file, refused on upload, and a copy already in the library gives 422 on resize instead of a 500;
- the login cookies over https (RunPod's proxy says so in X-Forwarded-Proto): Secure, so a browser never sends them
  over plain http to the same host; over plain http (a laptop) they still work;
- every answer refuses to be framed (another pod's `*.proxy.runpod.net` page is the same site, so the login cookie
  goes with a frame: clickjacking) and to be sniffed as another type.
"""

from __future__ import annotations

import json
import struct

import pytest

import app as datasets_pkg
import caption_service
import trainer
from trainer.lora_file import LoraFileError, read_header

PASSWORD = "s3cret"
DIGITS = ["²", "٣", "１"]  # superscript two, Arabic-Indic three, fullwidth one


def _lora(meta) -> bytes:
    """A LoRA layer of Z-Image's in this studio's names, its header carrying `meta` as its __metadata__."""
    header, offset = {"__metadata__": meta}, 0
    for part, shape in (("lora_A", [4, 64]), ("lora_B", [64, 4])):
        header[f"diffusion_model.layers.0.attention.to_q.{part}.weight"] = {
            "dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * 256]}
        offset += 4 * 256
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


@pytest.mark.parametrize("digit", DIGITS)
def test_a_chunk_number_in_unicode_digits_is_refused_in_a_sentence(make_settings, digit):
    client = datasets_pkg.create_app(make_settings()).test_client()
    assert client.post("/api/datasets", json={"name": "d"}).status_code == 201
    sid = client.post("/api/datasets/d/uploads", json={"filename": "a.png", "size": 10}).get_json()["id"]
    answer = client.put(f"/api/datasets/d/uploads/{sid}/chunks/{digit}", data=b"0123456789")
    assert answer.status_code == 422 and "out of range" in answer.get_json()["error"]
    lib = trainer.create_app(make_settings(STUDIO_DEMO=1)).test_client()
    sid = lib.post("/api/library/uploads", json={"filename": "a.safetensors", "size": 10}).get_json()["id"]
    answer = lib.put(f"/api/library/uploads/{sid}/chunks/{digit}", data=b"0123456789")
    assert answer.status_code == 422 and "out of range" in answer.get_json()["error"]


def test_plain_chunk_numbers_still_work(make_settings):
    client = datasets_pkg.create_app(make_settings()).test_client()
    client.post("/api/datasets", json={"name": "d"})
    sid = client.post("/api/datasets/d/uploads", json={"filename": "a.png", "size": 10}).get_json()["id"]
    assert client.put(f"/api/datasets/d/uploads/{sid}/chunks/0", data=b"0123456789").status_code == 200


@pytest.mark.parametrize("meta", [5, [["a", "b"]], {"ss_tag_frequency": {"x": {"y": 1}}}, {"n": 3}, "text"])
def test_metadata_that_is_not_text_is_not_safetensors(tmp_path, meta):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(_lora(meta))
    with pytest.raises(LoraFileError, match="__metadata__"):
        read_header(path)


def test_text_metadata_and_none_at_all_still_read(tmp_path):
    path = tmp_path / "fine.safetensors"
    path.write_bytes(_lora({"ss_network_dim": "4", "trigger_word": "tok"}))
    assert read_header(path)["__metadata__"]["trigger_word"] == "tok"


def test_a_library_copy_with_hostile_metadata_answers_422_not_500(make_settings):
    studio = trainer.create_app(make_settings(STUDIO_DEMO=1))
    client, space = studio.test_client(), studio.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    (space.loras / "meta5.safetensors").write_bytes(_lora(5))
    answer = client.post("/api/library/files/meta5.safetensors/resize", json={"rank": 2})
    assert answer.status_code == 422, answer.get_json()
    assert client.get("/api/library").status_code == 200


def _login(client, **headers):
    scheme = headers.get("X-Forwarded-Proto", "http")
    return client.post("/login", data={"password": PASSWORD}, headers={"Origin": f"{scheme}://localhost", **headers})


def _set_cookies(response) -> dict[str, str]:
    return {value.split("=", 1)[0]: value for value in response.headers.getlist("Set-Cookie")}


def test_login_cookies_are_secure_behind_an_https_proxy(make_settings):
    client = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD=PASSWORD)).test_client()
    cookies = _set_cookies(_login(client, **{"X-Forwarded-Proto": "https"}))
    assert set(cookies) == {"studio_session", "studio_device"}
    for value in cookies.values():
        assert "; Secure" in value and "HttpOnly" in value


def test_login_over_plain_http_still_works(make_settings):
    client = datasets_pkg.create_app(make_settings(STUDIO_PASSWORD=PASSWORD)).test_client()
    cookies = _set_cookies(_login(client))
    assert all("; Secure" not in value for value in cookies.values())
    assert client.get("/api/datasets").status_code == 200


@pytest.mark.parametrize("factory", [datasets_pkg.create_app, trainer.create_app, caption_service.create_app])
def test_no_answer_may_be_framed_or_sniffed(make_settings, factory):
    client = factory(make_settings(STUDIO_PASSWORD=PASSWORD)).test_client()
    answers = [client.get("/login"), client.get("/health"), client.get("/", headers={"Accept": "text/html"}),
               client.get("/api/nothing-here"), client.post("/caption", json={})]
    _login(client)
    answers += [client.get("/"), client.get("/_studio/static/studio.css")]
    for answer in answers:
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
