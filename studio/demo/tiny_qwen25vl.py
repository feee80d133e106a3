"""A tiny, randomly initialised Qwen2.5-VL GGUF pair (text model + mmproj) for demo mode and tests.

Same layout, metadata keys and tensor names as a converted Qwen2.5-VL-7B-Instruct, only tiny, so
llama.cpp runs the real code paths (M-RoPE text model, window-attention ViT, 2x2 patch merger)
through llama-cpp-python's Qwen25VLChatHandler. The output is printable gibberish that depends on
the image, and the model never emits EOS: callers always cap `max_tokens`.

Deterministic: a fixed seed and no timestamps, so the same gguf version writes identical bytes.
Names follow llama.cpp as vendored in llama-cpp-python 0.3.36 (src/models/qwen2vl.cpp,
tools/mtmd/clip-impl.h, clip.cpp).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.registry import CAPTION_MMPROJ_FILE, CAPTION_MODEL_FILE

SEED = 1234

# Text model (real 7B: 3584 embd, 28 layers, 28 heads / 4 kv heads, head_dim 128).
T_EMBD, T_LAYERS, T_HEADS, T_KV_HEADS, T_FF = 64, 2, 4, 2, 128
T_HEAD_DIM = T_EMBD // T_HEADS  # llama.cpp asserts head_dim == n_rot
ROPE_SECTIONS = [2, 3, 3, 0]  # sums to head_dim / 2 (real: [16, 24, 24, 0])

# Vision tower (real: 1280 embd, 32 blocks, 16 heads, ff 3420, full attention every 8th block).
V_EMBD, V_LAYERS, V_HEADS, V_FF = 32, 2, 2, 48  # V_FF != V_EMBD, else clip.cpp swaps up/down
V_WA_PATTERN = 2  # block 0 windowed (112 px), block 1 full attention
PATCH = 14

# Qwen's special tokens are CONTROL tokens so "<|vision_start|>" etc. parse as single tokens.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
WORDS = ["a", "the", "of", "on", "in", "with", "and", "photo", "image", "cat", "dog",
         "red", "blue", "green", "square", "circle", "person", "standing"]

# Qwen2.5-VL's chat template (metadata only; the chat handler brings its own).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet. All 256 bytes must be in the vocabulary: llama.cpp falls back to
    byte tokens for anything the merges do not cover, and throws on a missing one."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _build_vocab():
    from gguf import TokenType

    b2u = _byte_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    printable = {b2u[b] for b in range(0x20, 0x7F)}
    merges, seen = [], set(tokens)
    for word in WORDS:  # left-to-right merge chains: "Ġ p", "Ġp h", ...
        pieces = [b2u[0x20]] + list(word)
        current = pieces[0]
        for nxt in pieces[1:]:
            if current + nxt not in seen:
                merges.append(f"{current} {nxt}")
                tokens.append(current + nxt)
                seen.add(current + nxt)
            current += nxt
    # Tokens the model may emit: printable ASCII bytes and merged words.
    emittable = [t in printable or len(t) > 1 for t in tokens] + [False] * len(SPECIALS)
    types = [TokenType.NORMAL] * len(tokens) + [TokenType.CONTROL] * len(SPECIALS)
    return tokens + SPECIALS, types, merges, np.array(emittable)


def _finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_text(path: Path, rng: np.random.Generator) -> None:
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    q8_0 = GGMLQuantizationType.Q8_0
    tokens, types, merges, emittable = _build_vocab()
    n_vocab, kv = len(tokens), T_KV_HEADS * T_HEAD_DIM
    w = GGUFWriter(str(path), "qwen2vl")
    w.add_type("model")
    w.add_name("tiny-qwen25vl")
    w.add_file_type(7)  # LLAMA_FTYPE_MOSTLY_Q8_0, like the real Q8_0 file
    a = "qwen2vl"
    w.add_uint32(f"{a}.context_length", 4096)
    w.add_uint32(f"{a}.embedding_length", T_EMBD)
    w.add_uint32(f"{a}.block_count", T_LAYERS)
    w.add_uint32(f"{a}.feed_forward_length", T_FF)
    w.add_uint32(f"{a}.attention.head_count", T_HEADS)
    w.add_uint32(f"{a}.attention.head_count_kv", T_KV_HEADS)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{a}.rope.freq_base", 1000000.0)
    w.add_array(f"{a}.rope.dimension_sections", ROPE_SECTIONS)  # required for qwen2vl

    ids = {t: i for i, t in enumerate(tokens)}
    w.add_tokenizer_model("gpt2")  # byte-level BPE; merges are mandatory
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids["<|endoftext|>"])  # as in the real Qwen2.5-VL GGUF
    w.add_eos_token_id(ids["<|im_end|>"])
    w.add_pad_token_id(ids["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def mat(rows, cols, std=0.2):  # numpy (out, in) == GGUF ne reversed
        return rng.normal(0.0, std, (rows, cols)).astype(np.float32)

    def vec(n, std=0.02):
        return rng.normal(0.0, std, n).astype(np.float32)

    def q8(name, m):  # 2-D weights in Q8_0; norms and biases stay F32
        w.add_tensor(name, quantize(m, q8_0), raw_dtype=q8_0)

    q8("token_embd.weight", mat(n_vocab, T_EMBD, 1.0))
    for i in range(T_LAYERS):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(T_EMBD, np.float32))
        for name, out in (("attn_q", T_EMBD), ("attn_k", kv), ("attn_v", kv)):
            q8(p + name + ".weight", mat(out, T_EMBD))
            w.add_tensor(p + name + ".bias", vec(out))
        q8(p + "attn_output.weight", mat(T_EMBD, T_EMBD))
        w.add_tensor(p + "ffn_norm.weight", np.ones(T_EMBD, np.float32))
        q8(p + "ffn_gate.weight", mat(T_FF, T_EMBD))
        q8(p + "ffn_up.weight", mat(T_FF, T_EMBD))
        q8(p + "ffn_down.weight", mat(T_EMBD, T_FF))
    w.add_tensor("output_norm.weight", np.ones(T_EMBD, np.float32))
    # Large logits for emittable tokens, exactly 0 for control and non-printable ones: under the
    # handler's default sampling or greedy, output is printable gibberish and EOS never wins.
    q8("output.weight", mat(n_vocab, T_EMBD, 1.0) * emittable[:, None])
    _finish(w)


def _write_mmproj(path: Path, rng: np.random.Generator) -> None:
    from gguf import GGUFWriter

    v = "clip.vision."
    w = GGUFWriter(str(path), "clip")
    w.add_type("mmproj")
    w.add_name("tiny-qwen25vl-mmproj")
    w.add_file_type(1)  # F16
    w.add_string("clip.projector_type", "qwen2.5vl_merger")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.use_silu", True)  # SwiGLU MLP in the ViT blocks
    w.add_uint32(v + "image_size", 560)
    w.add_uint32(v + "patch_size", PATCH)
    w.add_uint32(v + "embedding_length", V_EMBD)
    w.add_uint32(v + "feed_forward_length", V_FF)
    w.add_uint32(v + "block_count", V_LAYERS)
    w.add_uint32(v + "projection_dim", T_EMBD)  # must equal the text embedding_length
    w.add_uint32(v + "attention.head_count", V_HEADS)
    w.add_float32(v + "attention.layer_norm_epsilon", 1e-6)
    w.add_uint32(v + "spatial_merge_size", 2)
    w.add_uint32(v + "n_wa_pattern", V_WA_PATTERN)  # required for qwen2.5vl_merger
    w.add_array(v + "image_mean", [0.48145466, 0.4578275, 0.40821073])
    w.add_array(v + "image_std", [0.26862954, 0.26130258, 0.27577711])

    def f16(*shape, std=0.05):
        return rng.normal(0.0, std, shape).astype(np.float16)

    def f32(n, std=0.02):
        return rng.normal(0.0, std, n).astype(np.float32)

    # Conv3d (temporal 2) split into two Conv2d kernels, no bias (the graph asserts none).
    w.add_tensor("v.patch_embd.weight", f16(V_EMBD, 3, PATCH, PATCH))
    w.add_tensor("v.patch_embd.weight.1", f16(V_EMBD, 3, PATCH, PATCH))
    for i in range(V_LAYERS):
        p = f"v.blk.{i}."
        w.add_tensor(p + "ln1.weight", np.ones(V_EMBD, np.float32))  # RMS norms: weight only
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + name + ".weight", f16(V_EMBD, V_EMBD))
            w.add_tensor(p + name + ".bias", f32(V_EMBD))
        w.add_tensor(p + "ln2.weight", np.ones(V_EMBD, np.float32))
        for name, shape in (("ffn_gate", (V_FF, V_EMBD)), ("ffn_up", (V_FF, V_EMBD)),
                            ("ffn_down", (V_EMBD, V_FF))):
            w.add_tensor(p + name + ".weight", f16(*shape))
            w.add_tensor(p + name + ".bias", f32(shape[0]))
    w.add_tensor("v.post_ln.weight", np.ones(V_EMBD, np.float32))  # merger.ln_q
    # Patch merger: 2x2 neighbouring patches concatenated -> MLP (GELU) -> text embedding size.
    w.add_tensor("mm.0.weight", f16(4 * V_EMBD, 4 * V_EMBD))
    w.add_tensor("mm.0.bias", f32(4 * V_EMBD))
    w.add_tensor("mm.2.weight", f16(T_EMBD, 4 * V_EMBD, std=0.5))
    w.add_tensor("mm.2.bias", f32(T_EMBD))
    _finish(w)


def write_tiny_qwen25vl(out_dir: Path) -> tuple[Path, Path]:
    """Write the pair into `out_dir` under the real file names; returns (text_model, mmproj)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)  # one stream, text model first: the order fixes the bytes
    text_path = out_dir / CAPTION_MODEL_FILE
    mmproj_path = out_dir / CAPTION_MMPROJ_FILE
    _write_text(text_path, rng)
    _write_mmproj(mmproj_path, rng)
    return text_path, mmproj_path
