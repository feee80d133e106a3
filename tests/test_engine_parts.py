"""Engine pieces on their own: adapter merge/cancel, 8-bit base weights, buckets, triggers, batch order,
checkpoint rotation and disk-full handling, file-based control."""

from __future__ import annotations

import errno

import pytest
import torch
from PIL import Image

from trainer.buckets import bucket_for
from trainer.engine import TrainingControl, TrainingError
from trainer.engine import checkpoints as ckpt
from trainer.engine import model as zmodel
from trainer.engine.data import BatchPlan, ImageItem, Sample, apply_trigger, build_samples, load_pixels
from trainer.engine.errors import oom_error
from trainer.engine.quant import QuantizedLinear, quantize_linears
from trainer.recipes import get_recipe


def _probe(transformer):
    g = torch.Generator("cpu").manual_seed(5)
    x = [torch.randn(16, 1, 8, 8, generator=g)]
    caps = [torch.randn(7, 32, generator=g)]
    with torch.no_grad():
        return transformer(x, torch.tensor([0.4]), caps, return_dict=False)[0][0]


def test_adapter_merge_and_cancel_round_trip_to_the_base(demo_paths):
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    base_weights = {k: v.clone() for k, v in transformer.state_dict().items()}
    base_out = _probe(transformer)
    adapter = zmodel.LoraDelta.load(demo_paths.training_adapter)
    assert len(adapter.modules) == 16 and "layers.0.attention.to_q" in adapter.modules

    zmodel.merge_adapter(transformer, adapter)
    merged = transformer.state_dict()
    changed = [k for k in base_weights if not torch.equal(base_weights[k], merged[k])]
    assert len(changed) == 16 and all(k.startswith("layers.") for k in changed)
    merged_out = _probe(transformer)
    assert (merged_out - base_out).abs().max() > 1e-3

    # cancelled for sampling: the output is the base model's, and the hooks go away afterwards
    with zmodel.adapter_cancelled(transformer, adapter):
        assert torch.allclose(_probe(transformer), base_out, atol=1e-5)
    assert torch.equal(_probe(transformer), merged_out)

    # also with the trainable LoRA wrapped around the same modules
    zmodel.add_lora(transformer, rank=4, alpha=4, seed=0)
    with zmodel.adapter_cancelled(transformer, adapter):
        assert torch.allclose(_probe(transformer), base_out, atol=1e-5)  # LoRA B starts at zero

    zmodel.merge_adapter(transformer, adapter, weight=-1.0)
    for key, value in base_weights.items():
        module, _, leaf = key.rpartition(".")
        peft_key = f"{module}.base_layer.{leaf}" if module in adapter.modules else key
        assert torch.allclose(transformer.state_dict()[peft_key], value, atol=1e-6), key


def test_lora_state_dict_folds_alpha_and_uses_comfyui_keys(demo_paths):
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    params = zmodel.add_lora(transformer, rank=4, alpha=8, seed=1)
    assert all(p.dtype == torch.float32 and p.requires_grad for p in params)
    with torch.no_grad():
        for p in params:
            p.fill_(0.5)
    sd = zmodel.lora_state_dict(transformer, rank=4, alpha=8)
    assert {value.dtype for value in sd.values()} == {torch.float32}
    halves = zmodel.lora_state_dict(transformer, rank=4, alpha=8, dtype="bf16")
    assert all(halves[key].dtype == torch.bfloat16 and torch.allclose(halves[key].float(), sd[key], rtol=1e-2)
               for key in sd)
    assert "diffusion_model.layers.0.feed_forward.w1.lora_A.weight" in sd
    assert torch.all(sd["diffusion_model.layers.0.feed_forward.w1.lora_B.weight"] == 1.0)  # 0.5 * 8/4
    assert torch.all(sd["diffusion_model.layers.0.feed_forward.w1.lora_A.weight"] == 0.5)


ATTENTION = {"attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"}
FEED_FORWARD = {"feed_forward.w1", "feed_forward.w2", "feed_forward.w3"}


@pytest.mark.parametrize("targets, modules", [
    ("all", ATTENTION | FEED_FORWARD | {"adaLN_modulation.0"}),
    ("attention+feed_forward", ATTENTION | FEED_FORWARD),
    ("attention", ATTENTION),
])
def test_lora_targets_choose_the_layers_and_the_file_renders_on_the_base(demo_paths, tmp_path, targets, modules):
    from trainer.engine.checkpoints import write_lora_file

    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    zmodel.add_lora(transformer, rank=4, alpha=4, seed=1, targets=targets)
    sd = zmodel.lora_state_dict(transformer, rank=4, alpha=4)
    found = {key.split(".", 3)[3].rsplit(".lora_", 1)[0] for key in sd}  # after diffusion_model.layers.N.
    assert found == modules
    assert all(key.startswith("diffusion_model.layers.") for key in sd)  # the refiners never get one
    path = tmp_path / "lora.safetensors"
    write_lora_file(path, sd, {})
    base = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    zmodel.check_fits(base, zmodel.LoraDelta.load(path))  # Try the LoRA and ComfyUI load any subset


def test_quantized_linear_matches_and_passes_input_gradients():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    linear.requires_grad_(False)
    x = torch.randn(5, 64, requires_grad=True)
    ref = linear(x)
    for mode, tol in (("float8", 0.08), ("int8", 0.02)):
        q = QuantizedLinear(linear, mode)
        assert q.weight.element_size() == 1 and isinstance(q, torch.nn.Linear)
        out = q(x)
        assert (out - ref).abs().max() < tol * ref.abs().max()
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        x.grad = None


def test_quantized_base_with_lora_trains_on_cpu(demo_paths):
    transformer = zmodel.load_transformer(demo_paths, torch.device("cpu"), torch.float32)
    params = zmodel.add_lora(transformer, rank=4, alpha=4, seed=0)
    count = quantize_linears(transformer, "float8")
    assert count > 16
    assert isinstance(transformer.get_submodule("layers.0.attention.to_q").base_layer, QuantizedLinear)
    assert not any(isinstance(m, QuantizedLinear) for n, m in transformer.named_modules() if ".lora_" in n)
    g = torch.Generator("cpu").manual_seed(0)
    out = transformer([torch.randn(16, 1, 8, 8, generator=g)], torch.tensor([0.5]), [torch.randn(6, 32, generator=g)],
                      return_dict=False)[0][0]
    out.pow(2).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_buckets_are_multiples_of_16_and_never_upscale():
    assert bucket_for(1024, 1024, 512) == (512, 512)
    assert bucket_for(2000, 1000, 1024) == (1440, 720)
    w, h = bucket_for(3000, 2000, 768)
    assert w % 16 == 0 and h % 16 == 0 and w * h <= 768 * 768 and abs(w / h - 1.5) < 0.05
    assert bucket_for(300, 200, 1024) == (288, 192)  # small image: its own size, rounded down
    for size in ((17, 900), (5000, 40), (16, 16)):
        w, h = bucket_for(*size, 512)
        assert w % 16 == 0 and h % 16 == 0 and w >= 16 and h >= 16


def test_samples_dedupe_small_images_and_crop_to_bucket(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(path)
    item = ImageItem(path, "cap", "x" * 64, 300, 200)
    samples = build_samples([item], [512, 768, 1024])
    assert [s.bucket for s in samples] == [(288, 192)]
    big = ImageItem(path, "cap", "y" * 64, 300, 200)
    assert load_pixels(Sample(big, (128, 96))).size == (128, 96)


def test_mirrored_examples_are_the_mirror_images(tmp_path):
    path = tmp_path / "a.png"
    picture = Image.new("RGB", (64, 64), (0, 0, 0))
    picture.paste((255, 0, 0), (0, 0, 16, 64))  # a red band on the left
    picture.save(path)
    item = ImageItem(path, "cap", "z" * 64, 64, 64)
    plain, mirrored = build_samples([item], [64], flip=True)
    assert (plain.flip, mirrored.flip) == (False, True) and plain.bucket == mirrored.bucket
    assert load_pixels(plain).getpixel((2, 30)) == (255, 0, 0) and load_pixels(plain).getpixel((61, 30)) == (0, 0, 0)
    assert load_pixels(mirrored).getpixel((61, 30)) == (255, 0, 0)  # the band is on the right
    assert build_samples([item], [64]) == [plain]


def test_trigger_word_handling():
    assert apply_trigger("[trigger] on a beach", "zkw") == "zkw on a beach"
    assert apply_trigger("a photo of zkw", "zkw") == "a photo of zkw"
    assert apply_trigger("a photo", "zkw") == "zkw, a photo"
    assert apply_trigger("a zkwx photo", "zkw") == "zkw, a zkwx photo"
    assert apply_trigger("a ZKW photo", "zkw") == "a ZKW photo"
    assert apply_trigger("", "zkw") == "zkw"
    assert apply_trigger("[trigger] a dog", "") == "a dog"


def test_batch_plan_is_per_bucket_and_reproducible():
    items = [ImageItem(None, str(i), str(i), 10, 10) for i in range(7)]
    samples = [Sample(item, (64, 64) if i < 4 else (64, 48)) for i, item in enumerate(items)]
    plan = BatchPlan(samples, batch_size=2, seed=3)
    assert len(plan) == 4  # 2 + 2 batches
    epoch0 = [plan.batch(i) for i in range(4)]
    assert sorted(i for b in epoch0 for i in b) == list(range(7))
    assert all(len({samples[i].bucket for i in b}) == 1 for b in epoch0)
    again = BatchPlan(samples, batch_size=2, seed=3)
    assert [again.batch(i) for i in range(4, 12)] == [plan.batch(i) for i in range(4, 12)]


def test_batch_plan_trains_each_image_as_often_as_its_repeats():
    once = [ImageItem(None, f"a{i}", f"a{i}", 10, 10) for i in range(3)]
    thrice = [ImageItem(None, f"b{i}", f"b{i}", 10, 10, repeats=3) for i in range(2)]
    samples = [Sample(item, (64, 64)) for item in once + thrice]
    plan = BatchPlan(samples, batch_size=1, seed=5)
    assert len(plan) == 3 + 2 * 3
    epoch = [i for b in (plan.batch(n) for n in range(len(plan))) for i in b]
    assert sorted(epoch) == [0, 1, 2, 3, 3, 3, 4, 4, 4]
    assert [plan.batch(n) for n in range(9, 30)] == [BatchPlan(samples, 1, 5).batch(n) for n in range(9, 30)]


def test_sources_read_every_dataset_with_its_repeats(tmp_path):
    from trainer.engine.data import DatasetSource, as_sources, dataset_hash, read_datasets, sources_label

    for name, count in (("close", 2), ("wide", 3)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "dataset.json").write_text(f'{{"name": "{name}-set"}}')
        for i in range(count):
            Image.new("RGB", (16, 12), (i * 40, 0, 0)).save(folder / f"img{i}.png")  # the same names in both
            (folder / f"img{i}.txt").write_text(f"{name} {i}")
    config = get_recipe("zimage-turbo").config_from_dict({"trigger_word": "zkw"})
    assert as_sources(tmp_path / "close") == [DatasetSource(tmp_path / "close", 1)]
    sources = as_sources([(tmp_path / "close", 4), DatasetSource(tmp_path / "wide")])
    items = read_datasets(sources, config, print)
    assert [(i.path.parent.name, i.path.name, i.repeats) for i in items] == [
        ("close", "img0.png", 4), ("close", "img1.png", 4), ("wide", "img0.png", 1), ("wide", "img1.png", 1),
        ("wide", "img2.png", 1)]
    assert items[0].caption == "zkw, close 0"
    assert sources_label(sources) == "close-set (version close) x4 + wide-set (version wide)"
    one = read_datasets(as_sources(tmp_path / "wide"), config, print)
    assert dataset_hash(one) == dataset_hash(items[2:])  # repeats 1 hashes as a one-dataset job always did
    assert dataset_hash(items[:2]) != dataset_hash(read_datasets(as_sources(tmp_path / "close"), config, print))
    with pytest.raises(TrainingError, match="names no dataset"):
        as_sources([])


def test_each_further_dataset_keeps_its_own_trigger_word(tmp_path):
    from trainer.engine.data import as_sources, read_datasets, source_triggers

    for name, trigger in (("anna", "annax"), ("bob", "bobx"), ("more-anna", "")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "dataset.json").write_text(f'{{"name": "{name}", "trigger_word": "{trigger}"}}')
        Image.new("RGB", (16, 12)).save(folder / "a.png")
        (folder / "a.txt").write_text("[trigger] at the beach" if name != "bob" else "bobx at the beach")
    config = get_recipe("zimage-turbo").config_from_dict({"trigger_word": "annax"})
    sources = as_sources([tmp_path / "anna", tmp_path / "bob", tmp_path / "more-anna"])
    assert source_triggers(sources, config) == ["annax", "bobx", "annax"]  # none of its own: the job's
    captions = [item.caption for item in read_datasets(sources, config, print)]
    assert captions == ["annax at the beach", "bobx at the beach", "annax at the beach"]  # no "annax, bobx ..."
    # one dataset: the job's trigger word, whatever the export had (the form may have changed it)
    config = get_recipe("zimage-turbo").config_from_dict({"trigger_word": "newword"})
    assert [i.caption for i in read_datasets(as_sources(tmp_path / "bob"), config, print)] == [
        "newword, bobx at the beach"]


def _save(job, step, keep=2):
    return ckpt.save_checkpoint(job, step, {"w": torch.ones(2)}, {"steps": str(step)}, {"step": step}, keep)


def test_checkpoints_keep_the_last_k(tmp_path):
    for step in (5, 10, 15, 20):
        _save(tmp_path, step)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [15, 20]
    assert ckpt.latest_checkpoint(tmp_path)[0] == 20
    assert ckpt.load_state(ckpt.latest_checkpoint(tmp_path)[1]) == {"step": 20}


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path, 10)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(TrainingError, match="disk is full.*step 20.*step 10 is kept"):
        _save(tmp_path, 20)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_file_based_control(tmp_path):
    control = TrainingControl(tmp_path)
    assert not control.should_stop() and control.take_requests() == set()
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "sample").touch()
    (tmp_path / "control" / "save").touch()
    assert control.take_requests() == {"sample", "save"}
    assert control.take_requests() == set()
    control.request("save")
    assert control.take_requests() == {"save"}
    (tmp_path / "control" / "stop").touch()
    assert control.should_stop()
    control.clear_stop()
    assert not control.should_stop()


def test_oom_advice_follows_the_settings():
    recipe = get_recipe("zimage-turbo")
    assert "gradient_checkpointing" in str(oom_error(recipe.config_from_dict({"gradient_checkpointing": False}), 3,
                                                     True))
    assert "quantize_base to float8" in str(oom_error(recipe.default_config(), 3, True))
    message = str(oom_error(recipe.config_from_dict({"quantize_base": "float8"}), 3, True))
    assert "resolutions" in message and "OOM" in message


def _rgba(path, size=(40, 20), transparent_left: bool = True):
    import numpy as np

    pixels = np.zeros((size[1], size[0], 4), np.uint8)
    pixels[..., :3] = 200
    pixels[..., 3] = 255
    if transparent_left:
        pixels[:, : size[0] // 2, 3] = 0
    Image.fromarray(pixels, "RGBA").save(path)
    return ImageItem(path, "x", "x", *size)


def test_an_alpha_mask_follows_the_pixels_crop_and_mirror(tmp_path):
    from trainer.engine.masks import load_mask

    item = _rgba(tmp_path / "cut.png")
    mask = load_mask(Sample(item, (40, 20)), (4, 8))  # a latent grid of 8 x 4
    assert mask.shape == (1, 4, 8)
    assert mask[0, :, :4].max() == 0 and mask[0, :, 4:].min() == 1  # left half transparent
    mirrored = load_mask(Sample(item, (40, 20), flip=True), (4, 8))
    assert torch.equal(mirrored, mask.flip(-1))
    cropped = load_mask(Sample(item, (20, 20)), (2, 2))  # the centre square: half on each side
    assert cropped[0, :, 0].max() == 0 and cropped[0, :, 1].min() == 1
    assert load_mask(Sample(_rgba(tmp_path / "opaque.png", transparent_left=False), (40, 20)), (4, 8)) is None
    Image.new("RGB", (40, 20)).save(tmp_path / "rgb.png")
    assert load_mask(Sample(ImageItem(tmp_path / "rgb.png", "x", "x", 40, 20), (40, 20)), (4, 8)) is None


def test_the_masked_loss_counts_only_the_visible_part():
    from trainer.engine.masks import masked_mse

    squared = torch.rand(2, 3, 4, 4)
    assert torch.equal(masked_mse(squared, None), squared.mean(dim=(1, 2, 3)))
    assert torch.equal(masked_mse(squared, [None, None]), squared.mean(dim=(1, 2, 3)))
    half = torch.zeros(1, 4, 4)
    half[..., 2:] = 1
    loss = masked_mse(squared, [half, None])
    assert torch.allclose(loss[0], squared[0, :, :, 2:].mean())
    assert torch.allclose(loss[1], squared[1].mean())
    squared[0, :, :, :2] = 1e6  # what the transparent part holds does not count
    assert torch.allclose(masked_mse(squared, [half, None])[0], loss[0])
    assert masked_mse(squared, [torch.zeros(1, 4, 4), None])[0] == 0  # nothing visible: no loss


def test_reading_a_dataset_still_catches_a_cut_off_jpeg_and_turns_sizes(tmp_path):
    """A JPEG is checked at 1/8 scale, which still reads every byte: a file cut off in the middle is skipped with
    a warning before training, and a photo stored on its side has its size as shown."""
    import io
    from types import SimpleNamespace

    from PIL import Image

    from trainer.engine.data import read_dataset

    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 200)).save(buffer, "JPEG", quality=90)
    whole = buffer.getvalue()
    (tmp_path / "a.jpg").write_bytes(whole)
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    turned = Image.Exif()
    turned[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 10, 10)).save(buffer, "JPEG", exif=turned)
    (tmp_path / "side.jpg").write_bytes(buffer.getvalue())
    warnings: list[str] = []
    config = SimpleNamespace(trigger_word="zkw", missing_captions="default_caption", default_caption="a photo")
    items = read_dataset(tmp_path, config, warnings.append)
    assert [(i.path.name, i.width, i.height) for i in items] == [("a.jpg", 640, 480), ("side.jpg", 480, 640)]
    assert len(warnings) == 1 and warnings[0].startswith("Skipping cut.jpg: it is not a readable image")
