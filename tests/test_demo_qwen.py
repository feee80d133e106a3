"""The tiny Qwen2.5-VL demo pair: deterministic bytes, built where the registry says, loadable by llama.cpp."""

import base64
import hashlib
import io

from PIL import Image, ImageDraw

from studio.demo import ensure_demo_models
from studio.demo.tiny_qwen25vl import write_tiny_qwen25vl
from studio.registry import CAPTION_MMPROJ_FILE, CAPTION_MODEL_FILE, model_paths


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_builds_are_byte_identical(tmp_path):
    first = write_tiny_qwen25vl(tmp_path / "one")
    second = write_tiny_qwen25vl(tmp_path / "two")
    assert [p.name for p in first] == [CAPTION_MODEL_FILE, CAPTION_MMPROJ_FILE]
    assert [_digest(p) for p in first] == [_digest(p) for p in second]
    assert all(p.stat().st_size > 100_000 for p in first)


def test_ensure_demo_models_builds_the_caption_pair(make_settings):
    settings = make_settings(STUDIO_DEMO=1)
    paths = ensure_demo_models(settings, zimage=False)
    assert paths == model_paths(settings)
    assert paths.caption_model.is_file() and paths.caption_mmproj.is_file()
    assert paths.caption_model.parent == paths.models_root / "Qwen2.5-VL-7B-Instruct-GGUF"
    before = paths.caption_model.stat().st_mtime_ns
    ensure_demo_models(settings, zimage=False)  # already there: nothing is rebuilt
    assert paths.caption_model.stat().st_mtime_ns == before


def test_pair_captions_an_image_in_llama_cpp(demo_paths):
    from llama_cpp import Llama

    from caption_service.llm import BoundedQwen25VLChatHandler

    image = Image.new("RGB", (96, 64), (30, 120, 200))
    ImageDraw.Draw(image).rectangle((10, 10, 50, 50), fill=(220, 30, 30))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    handler = BoundedQwen25VLChatHandler(clip_model_path=str(demo_paths.caption_mmproj), image_max_tokens=64,
                                         use_gpu=False, verbose=False)
    llm = Llama(model_path=str(demo_paths.caption_model), chat_handler=handler, n_ctx=1024, n_threads=1,
                n_threads_batch=1, n_gpu_layers=0, seed=0, verbose=False)
    try:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                   {"type": "text", "text": "Describe this image."}]}],
            max_tokens=8, temperature=0.0, seed=0)
    finally:
        llm.close()
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length"  # the tiny model never emits EOS
    assert out["usage"]["completion_tokens"] == 8
    assert choice["message"]["content"].strip()
