"""Make a LoRA smaller: the same layers at a lower rank, each keeping its largest directions; a change that fits
the rank is kept exactly, `kept` says how much stays otherwise; key names, dtype and metadata carry over, alpha
is folded in; the library's button writes it beside the original (and into ComfyUI's loras)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from trainer.lora_file import LoraFileError, check_start_lora
from trainer.lora_resize import encode, read_tensors, resize

PREFIX = "diffusion_model.layers.{}.attention.to_q"


def _lora(path, rank=8, true_rank=2, dtype="F32", alpha=None, layers=2, seed=0):
    """A LoRA file of `rank` whose every layer's change is of rank `true_rank`."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(layers):
        mix = rng.normal(size=(rank, rank))
        up = np.concatenate([rng.normal(size=(64, true_rank)), np.zeros((64, rank - true_rank))], 1) @ mix
        down = np.linalg.inv(mix) @ np.concatenate([rng.normal(size=(true_rank, 48)),
                                                    np.zeros((rank - true_rank, 48))], 0)
        tensors[f"{PREFIX.format(i)}.lora_A.weight"] = down.astype(np.float32)
        tensors[f"{PREFIX.format(i)}.lora_B.weight"] = up.astype(np.float32)
        if alpha is not None:
            tensors[f"{PREFIX.format(i)}.alpha"] = np.array(alpha, dtype=np.float32)
    path.write_bytes(encode(tensors, dtype, {"lora_rank": str(rank), "trigger_word": "zkw"}))
    return tensors


def _change(tensors, i, scale=1.0):
    return scale * tensors[f"{PREFIX.format(i)}.lora_B.weight"] @ tensors[f"{PREFIX.format(i)}.lora_A.weight"]


def test_a_change_that_fits_the_rank_is_kept_exactly(tmp_path):
    source = _lora(tmp_path / "cat.safetensors")
    made = resize(tmp_path / "cat.safetensors", 2, tmp_path / "cat-r2.safetensors")
    assert (made.rank, made.from_rank, round(made.kept, 6)) == (2, 8, 1.0)
    header, out = read_tensors(made.path)
    for i in range(2):
        assert out[f"{PREFIX.format(i)}.lora_A.weight"].shape == (2, 48)
        assert np.allclose(_change(out, i), _change(source, i), atol=1e-4)
    meta = header["__metadata__"]
    assert meta["lora_rank"] == meta["ss_network_dim"] == "2" and meta["trigger_word"] == "zkw"
    assert meta["resized_from"] == "cat.safetensors" and meta["resize_kept"] == "1.0000"
    assert made.size == made.path.stat().st_size < (tmp_path / "cat.safetensors").stat().st_size / 3
    check_start_lora(made.path, 2, "all")  # a job can start from it, as from any LoRA of this rank


def test_every_layer_keeps_the_rank_asked_for_even_one_that_changes_less_or_nothing(tmp_path):
    source = _lora(tmp_path / "cat.safetensors")  # rank 8, each layer's change of rank 2
    source[f"{PREFIX.format(1)}.lora_B.weight"][:] = 0  # a layer that changes nothing (a LoRA at step 0)
    (tmp_path / "cat.safetensors").write_bytes(encode(source, "F32", {}))
    made = resize(tmp_path / "cat.safetensors", 4, tmp_path / "cat-r4.safetensors")
    _header, out = read_tensors(made.path)
    assert {out[f"{PREFIX.format(i)}.lora_A.weight"].shape for i in range(2)} == {(4, 48)}
    assert np.allclose(_change(out, 0), _change(source, 0), atol=1e-4) and not _change(out, 1).any()
    assert made.kept == pytest.approx(1.0)
    check_start_lora(made.path, 4, "all")  # one rank throughout: a job can go on from it


def test_a_lower_rank_keeps_the_largest_directions_and_says_how_much(tmp_path):
    source = _lora(tmp_path / "cat.safetensors", true_rank=8, layers=1)
    made = resize(tmp_path / "cat.safetensors", 3, tmp_path / "cat-r3.safetensors")
    values = np.linalg.svd(_change(source, 0), compute_uv=False)
    assert made.kept == pytest.approx(np.sqrt((values[:3] ** 2).sum() / (values ** 2).sum()), rel=1e-5)
    _header, out = read_tensors(made.path)
    best = np.linalg.norm(_change(source, 0) - _change(out, 0))
    assert best == pytest.approx(np.sqrt((values[3:] ** 2).sum()), rel=1e-4)  # the best rank-3 change there is


def test_alpha_is_folded_in_and_bf16_stays_bf16(tmp_path):
    source = _lora(tmp_path / "a.safetensors", alpha=4.0, dtype="BF16")  # alpha 4 at rank 8: the change is halved
    made = resize(tmp_path / "a.safetensors", 2, tmp_path / "a-r2.safetensors")
    with safe_open(str(made.path), "pt") as handle:
        keys = list(handle.keys())
        assert handle.get_tensor(keys[0]).dtype == torch.bfloat16
    assert not [key for key in keys if key.endswith(".alpha")]
    _header, out = read_tensors(made.path)
    assert np.allclose(_change(out, 0), _change(source, 0, 0.5), atol=0.05)


def test_what_cannot_be_made_smaller_says_why(tmp_path):
    _lora(tmp_path / "cat.safetensors")
    with pytest.raises(LoraFileError, match="has rank 8: a smaller file needs a rank from 1 to 7"):
        resize(tmp_path / "cat.safetensors", 8, tmp_path / "x.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(encode({"w": np.zeros(2, np.float32)}, "F32", {}))
    with pytest.raises(LoraFileError, match="no lora_A/lora_B pairs"):
        resize(tmp_path / "empty.safetensors", 2, tmp_path / "y.safetensors")
    data = (tmp_path / "cat.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])  # a download cut short
    with pytest.raises(LoraFileError, match="cut short or damaged"):
        resize(tmp_path / "cut.safetensors", 2, tmp_path / "z.safetensors")
    header = b'{"a.lora_A.weight": {"dtype": "F32"}}'  # no offsets, no shape: not a file this can read
    (tmp_path / "odd.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(LoraFileError, match="not a LoRA file this studio can read"):
        resize(tmp_path / "odd.safetensors", 2, tmp_path / "w.safetensors")
    assert not [p for p in ("w", "x", "y", "z") if (tmp_path / f"{p}.safetensors").exists()]


def test_the_library_makes_a_smaller_copy_beside_it(trainer_app, trainer_client):
    space = trainer_app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    _lora(space.loras / "cat.safetensors")
    (space.root / "ComfyUI").mkdir()  # installed: the smaller copy goes to its loras too
    url = "/api/library/files/cat.safetensors/resize"
    made = trainer_client.post(url, json={"rank": 2})
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert (body["file"], body["rank"], body["from_rank"], body["kept"]) == ("cat-r2.safetensors", 2, 8, 1.0)
    assert body["size"] < body["from_size"] and (space.loras / "cat-r2.safetensors").is_file()
    copy = space.comfyui_loras / "cat-r2.safetensors"
    assert copy.read_bytes() == (space.loras / "cat-r2.safetensors").read_bytes()
    names = [entry["file"] for entry in trainer_client.get("/api/library").get_json()["loras"]]
    assert "cat-r2.safetensors" in names  # a card of its own
    again = trainer_client.post(url, json={"rank": 2})
    assert again.status_code == 409 and "delete it first" in again.get_json()["error"]
    for bad, status in (({"rank": 8}, 422), ({"rank": "4"}, 422), ({"rank": True}, 422), ({}, 422)):
        assert trainer_client.post(url, json=bad).status_code == status, bad
    assert trainer_client.post("/api/library/files/nope.safetensors/resize", json={"rank": 2}).status_code == 404
    assert trainer_client.post("/api/library/files/..%2Fx/resize", json={"rank": 2}).status_code in (400, 404)


def _lokr(path, w2_rank=16, alpha=None, product=False, dtype="F32", seed=0, shape=(32, 24)):
    """A LyCORIS LoKr of two layers: w1 4x4, w2 of `shape` and rank `w2_rank` (whole, or w2_a · w2_b with
    `product`)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(2):
        a, b = rng.normal(size=(shape[0], w2_rank)), rng.normal(size=(w2_rank, shape[1]))
        tensors[f"{PREFIX.format(i)}.lokr_w1"] = rng.normal(size=(4, 4)).astype(np.float32)
        if product:
            tensors[f"{PREFIX.format(i)}.lokr_w2_a"], tensors[f"{PREFIX.format(i)}.lokr_w2_b"] = (
                a.astype(np.float32), b.astype(np.float32))
        else:
            tensors[f"{PREFIX.format(i)}.lokr_w2"] = (a @ b).astype(np.float32)
        if alpha is not None:
            tensors[f"{PREFIX.format(i)}.alpha"] = np.array(alpha, dtype=np.float32)
    path.write_bytes(encode(tensors, dtype, {"network": "lokr", "trigger_word": "zkw"}))
    return tensors


def _kron_change(path, i):
    from trainer.engine.lokr import KronDelta

    return KronDelta.load(path, "x").delta(PREFIX.format(i).removeprefix("diffusion_model.")).numpy()


@pytest.mark.parametrize("shape", [(32, 24), (24, 32)], ids=["tall", "wide"])
def test_a_lokr_is_made_smaller_through_its_larger_factor(tmp_path, shape):
    from trainer.lora_file import read_header
    from trainer.lora_resize import smaller_options

    source = tmp_path / "kron.safetensors"
    _lokr(source, w2_rank=20, shape=shape)
    options = smaller_options(read_header(source), source.stat().st_size)
    assert [o["rank"] for o in options] == [16, 8, 4]  # below the 24 directions w2 can have
    made = resize(source, 8, tmp_path / "kron-r8.safetensors")
    assert (made.rank, made.from_rank) == (8, 24) and 0.5 < made.kept < 1
    header, out = read_tensors(made.path)
    layer = PREFIX.format(0)
    assert out[f"{layer}.lokr_w2_a"].shape == (shape[0], 8) and out[f"{layer}.lokr_w2_b"].shape == (8, shape[1])
    assert float(out[f"{layer}.alpha"]) == 8.0 and f"{layer}.lokr_w2" not in out  # scale alpha / 8 = 1
    assert header["__metadata__"]["resized_from"] == "kron.safetensors" and header["__metadata__"]["trigger_word"]
    # each layer keeps the best rank-8 change of its w2 (the norm of w1 ⊗ w2 is the product of theirs)
    for i in range(2):
        values = np.linalg.svd(_kron_change(source, i), compute_uv=False)
        lost = np.linalg.norm(_kron_change(source, i) - _kron_change(made.path, i))
        w1 = np.linalg.norm(read_tensors(source)[1][f"{PREFIX.format(i)}.lokr_w1"])
        w2 = np.linalg.svd(read_tensors(source)[1][f"{PREFIX.format(i)}.lokr_w2"], compute_uv=False)
        assert lost == pytest.approx(w1 * np.sqrt((w2[8:] ** 2).sum()), rel=1e-4)
        assert np.sqrt((values ** 2).sum()) == pytest.approx(w1 * np.sqrt((w2 ** 2).sum()), rel=1e-4)
    assert options[1]["bytes"] == pytest.approx(made.size, abs=600)  # the numbers exact; the header grows a little
    assert made.size < source.stat().st_size


def test_a_lokr_stored_as_a_product_with_alpha_keeps_its_change(tmp_path):
    source = tmp_path / "kron.safetensors"
    tensors = _lokr(source, w2_rank=4, alpha=2.0, product=True, dtype="BF16")  # scale 2 / 4: the change halved
    made = resize(source, 3, tmp_path / "kron-r3.safetensors")
    assert made.from_rank == 4
    with safe_open(str(made.path), "pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.bfloat16}
    layer = PREFIX.format(0)
    w1 = np.linalg.norm(tensors[f"{layer}.lokr_w1"]) * 0.5
    w2 = np.linalg.svd(tensors[f"{layer}.lokr_w2_a"] @ tensors[f"{layer}.lokr_w2_b"], compute_uv=False)
    lost = np.linalg.norm(_kron_change(source, 0) - _kron_change(made.path, 0))
    assert lost == pytest.approx(w1 * np.sqrt((w2[3:] ** 2).sum()), rel=0.05)  # bf16 rounding
    with pytest.raises(LoraFileError, match="larger LoKr factors have rank 4 at most: a smaller file needs a rank "
                                            "from 1 to 3"):
        resize(source, 4, tmp_path / "no.safetensors")
    assert not (tmp_path / "no.safetensors").exists()


def test_the_library_offers_a_lokr_smaller(trainer_app, trainer_client):
    space = trainer_app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    _lokr(space.loras / "kron.safetensors")
    card = next(c for c in trainer_client.get("/api/library").get_json()["loras"] if c["file"] == "kron.safetensors")
    assert card["lokr"] and [o["rank"] for o in card["smaller"]] == [16, 8, 4]
    made = trainer_client.post("/api/library/files/kron.safetensors/resize", json={"rank": 4})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["size"] < made.get_json()["from_size"] and 0 < made.get_json()["kept"] < 1
    cards = {c["file"]: c for c in trainer_client.get("/api/library").get_json()["loras"]}
    assert [o["rank"] for o in cards["kron-r4.safetensors"]["smaller"]] == [2, 1]


def test_odd_files_in_the_library_are_listed_without_a_smaller_copy_offered(trainer_app, trainer_client):
    """A file copied in by hand may hold anything: the listing still answers, offering no Make smaller for it."""
    space = trainer_app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    odd = {f"diffusion_model.{PREFIX.format(0)}.lokr_w1": np.ones(3, np.float32),  # not matrices
           f"diffusion_model.{PREFIX.format(0)}.lokr_w2": np.ones(5, np.float32)}
    (space.loras / "odd-kron.safetensors").write_bytes(encode(odd, "F32", {}))
    flat = {f"diffusion_model.{PREFIX.format(0)}.lora_A.weight": np.ones(4, np.float32),
            f"diffusion_model.{PREFIX.format(0)}.lora_B.weight": np.ones((8, 4), np.float32)}
    (space.loras / "odd-lora.safetensors").write_bytes(encode(flat, "F32", {}))
    (space.loras / "not-safetensors.safetensors").write_bytes(b"\x00" * 40)
    listing = trainer_client.get("/api/library")
    assert listing.status_code == 200
    cards = {c["file"]: c for c in listing.get_json()["loras"]}
    assert {name: cards[name]["smaller"] for name in cards} == {
        "odd-kron.safetensors": [], "odd-lora.safetensors": [], "not-safetensors.safetensors": []}


def test_the_choices_say_what_each_rank_keeps_before_anything_is_written(trainer_app, trainer_client):
    space = trainer_app.config["STUDIO_WORKSPACE"]
    space.loras.mkdir(parents=True, exist_ok=True)
    _lora(space.loras / "cat.safetensors", true_rank=8, layers=2)  # rank 8: choices 4, 2, 1
    _lokr(space.loras / "kron.safetensors", w2_rank=20)  # w2 32x24: choices 16, 8, 4
    for name, ranks in (("cat", [4, 2, 1]), ("kron", [16, 8, 4])):
        answer = trainer_client.get(f"/api/library/files/{name}.safetensors/smaller")
        assert answer.status_code == 200, answer.get_json()
        options = answer.get_json()["options"]
        assert [o["rank"] for o in options] == ranks
        before = sorted(p.name for p in space.loras.glob("*.safetensors"))
        for option in options:  # what the copy at that rank then keeps, to four places
            made = trainer_client.post(f"/api/library/files/{name}.safetensors/resize", json={"rank": option["rank"]})
            assert made.get_json()["kept"] == pytest.approx(option["kept"], abs=1e-4)
        assert len(list(space.loras.glob("*.safetensors"))) == len(before) + 3
    assert trainer_client.get("/api/library/files/nope.safetensors/smaller").status_code == 404
