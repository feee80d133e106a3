"""LyCORIS LoKr files: tried like LoRAs (each Linear's change scale · w1 ⊗ w2, applied by a hook without forming the
matrix), brought to the studio's module names on the way into the library, listed as LoKr (not made smaller nor
trained further), and rendered by the worker as the same change written as a LoRA renders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from studio.workspace import Workspace
from tests import test_trainer_renders as renders_tests
from tests.test_trainer_library_tries import library_lora, url_of
from tests.test_trainer_renders import REQUEST
from trainer.engine import model as zmodel
from trainer.engine.lokr import KronDelta
from trainer.lora_file import LoraFileError, check_start_lora, read_header, zimage_lora_rank
from trainer.lora_formats import converted_if_needed
from trainer.lora_resize import encode, read_tensors
from trainer.worker import Worker

settings, app, client, store = renders_tests.settings, renders_tests.app, renders_tests.client, renders_tests.store
MODULE = "layers.0.attention.to_q"


def test_the_hook_adds_scale_times_the_kronecker_product(demo_paths, tmp_path):
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    linear = transformer.get_submodule(MODULE)
    out, inp = linear.weight.shape
    torch.manual_seed(0)
    w1 = torch.randn(4, 4)
    w2_a, w2_b = torch.randn(out // 4, 2), torch.randn(2, inp // 4)
    path = tmp_path / "lokr.safetensors"
    save_file({f"diffusion_model.{MODULE}.lokr_w1": w1, f"diffusion_model.{MODULE}.lokr_w2_a": w2_a,
               f"diffusion_model.{MODULE}.lokr_w2_b": w2_b, f"diffusion_model.{MODULE}.alpha": torch.tensor(1.0)}, path)
    lokr = zmodel.load_adapter_file(path, "The LoKr")
    assert isinstance(lokr, KronDelta) and lokr.shape(MODULE) == (inp, out)
    change = 0.5 * torch.kron(w1, w2_a @ w2_b)  # alpha 1 over the decomposed factor's inner dimension 2
    torch.testing.assert_close(lokr.delta(MODULE), change)
    x = torch.randn(3, 5, inp)
    with torch.no_grad():
        plain = linear(x)
        with zmodel.adapter_applied(transformer, lokr, 0.7):
            hooked = linear(x)
        zmodel.merge_adapter(transformer, lokr, 0.7)
        merged = linear(x)
    torch.testing.assert_close(hooked, plain + 0.7 * x @ change.T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(merged, hooked, rtol=1e-4, atol=1e-4)


def _kohya_lokr(lora_path, folder) -> bytes:
    """The change of a LoRA file written as a LoKr with kohya's names: w1 = [[1]], w2 the LoRA's whole change."""
    _header, tensors = read_tensors(lora_path)
    out = {}
    for key, down in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("diffusion_model.").removesuffix(".lora_A.weight")
            name = "lora_unet_" + module.replace(".", "_")
            out[f"{name}.lokr_w1"] = np.ones((1, 1), np.float32)
            out[f"{name}.lokr_w2"] = tensors[f"diffusion_model.{module}.lora_B.weight"] @ down
    return encode(out, "F32", {"ss_network_module": "lycoris.kohya"})


def test_a_lokr_gets_our_names_and_is_listed_as_such(settings, demo_paths, tmp_path, client):
    lora = library_lora(settings, demo_paths, "as-lora.safetensors")
    path = Workspace(settings.root).loras / "as-lokr.safetensors"
    path.write_bytes(_kohya_lokr(lora, tmp_path))
    made = converted_if_needed(path)
    assert made.notes == ["kohya's key names"]
    keys = set(read_header(path)) - {"__metadata__"}
    assert f"diffusion_model.{MODULE}.lokr_w1" in keys and f"diffusion_model.{MODULE}.lokr_w2" in keys
    assert zimage_lora_rank(path, path.name) is None  # a LoKr has no rank
    with pytest.raises(LoraFileError, match="is a LyCORIS LoKr: set Network to lokr"):
        check_start_lora(path, 4, "all")
    with pytest.raises(LoraFileError, match="it was trained with a split this studio does not offer"):
        check_start_lora(path, 4, "all", network="lokr", factor=16)  # w1 1x1: no factor of the studio's
    card = next(e for e in client.get("/api/library").get_json()["loras"] if e["file"] == path.name)
    assert card["lokr"] is True and card["rank"] is None and card["lokr_factor"] is None  # not trained further
    listed = {f["name"]: (f["lokr"], f["lokr_factor"]) for f in client.get("/api/library/files").get_json()["files"]}
    assert listed == {"as-lora": (False, None), "as-lokr": (True, None)}
    assert "LyCORIS LoKr" in client.get(f"/library/try/{path.name}").get_data(as_text=True)
    fused = tmp_path / "fused.safetensors"
    qkv = "diffusion_model.layers.0.attention.qkv"
    fused.write_bytes(encode({f"{qkv}.lokr_w1": np.ones((1, 1), np.float32),
                              f"{qkv}.lokr_w2": np.ones((6, 2), np.float32)}, "F32", {}))
    with pytest.raises(LoraFileError, match="is a LoKr of the original checkpoint's fused qkv"):
        converted_if_needed(fused)


@pytest.mark.slow
def test_a_lokr_renders_as_the_same_change_written_as_a_lora(client, store, settings, demo_paths, tmp_path):
    lora = library_lora(settings, demo_paths, "as-lora.safetensors", trigger=None)
    path = Workspace(settings.root).loras / "as-lokr.safetensors"
    path.write_bytes(_kohya_lokr(lora, tmp_path))
    converted_if_needed(path)
    assert set(load_file(path)) >= {f"diffusion_model.{MODULE}.lokr_w1"}
    made = [client.post(url_of(file), json=REQUEST).get_json()["render"]["id"] for file in (lora, path)]
    Worker(settings, poll_s=0.1, unload_caption=False).run_once()  # the render process takes the next one too
    assert [store.get(render_id).status for render_id in made] == ["completed", "completed"], store.get(made[1]).error
    pictures = []
    for file in (lora, path):
        images = client.get(url_of(file)).get_json()["renders"][0]["images"]
        pictures.append([np.asarray(Image.open(io.BytesIO(client.get(i["url"]).data)), np.int16) for i in images])
    assert np.abs(pictures[0][1] - pictures[1][1]).max() <= 2  # the same change: the same picture (to rounding)
    assert np.abs(pictures[1][0] - pictures[1][1]).max() > 2  # and it changes the picture


def test_a_lokr_from_a_link_says_what_it_is(make_settings, settings, demo_paths, tmp_path):
    import trainer
    from tests.helpers import files_handler, serving
    from tests.test_lora_import import _import

    lora = library_lora(settings, demo_paths, "as-lora.safetensors")
    files = {"/style.safetensors": ("application/octet-stream", {}, _kohya_lokr(lora, tmp_path))}
    app = trainer.create_app(make_settings(STUDIO_DEMO=1, ALLOW_PRIVATE_URLS=1))
    with serving(files_handler(files)) as web:
        job = _import(app.test_client(), f"{web}/style.safetensors")
    assert job["status"] == "completed", job
    assert job["message"] == ("Added style.safetensors (a LyCORIS LoKr, converted from kohya's key names) to the "
                              "library.")
    assert job["result"]["rank"] is None
