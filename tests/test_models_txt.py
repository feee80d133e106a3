"""models.txt: the repo's file parses to the three models the registry loads; every bad line is named."""

import pytest

from studio import registry
from studio.models_txt import DEFAULT_MODELS_TXT, ModelsFileError, load_models_txt, parse_models_txt

VALID = """\
# header comment

owner/model-a  main  a.gguf,b.gguf  folder-a   # trailing comment
owner/model_b  0123456789abcdef0123456789abcdef01234567  transformer/*,model_index.json  nested/folder-b
"""


def test_valid_file_parses_with_comments_and_blank_lines():
    specs = parse_models_txt(VALID)
    assert [(s.repo, s.revision, s.patterns, s.target, s.line) for s in specs] == [
        ("owner/model-a", "main", ("a.gguf", "b.gguf"), "folder-a", 3),
        ("owner/model_b", "0123456789abcdef0123456789abcdef01234567", ("transformer/*", "model_index.json"),
         "nested/folder-b", 4),
    ]
    assert specs[0].name == "model-a"
    assert specs[0].is_exact("a.gguf") and not specs[1].is_exact("transformer/*")


def test_repo_models_txt_lists_the_three_models_in_the_registry_folders():
    specs = load_models_txt(DEFAULT_MODELS_TXT)
    by_key = {spec.key: spec for spec in specs}
    assert set(by_key) == {"caption", "zimage", "adapter"}
    caption = by_key["caption"]
    assert caption.repo == "ggml-org/Qwen2.5-VL-7B-Instruct-GGUF"
    assert caption.target == registry.CAPTION_DIR
    assert set(caption.patterns) == {registry.CAPTION_MODEL_FILE, registry.CAPTION_MMPROJ_FILE}
    zimage = by_key["zimage"]
    assert zimage.repo == "Tongyi-MAI/Z-Image-Turbo" and zimage.target == registry.ZIMAGE_DIR
    assert "model_index.json" in zimage.patterns
    for folder in ("transformer", "text_encoder", "vae", "tokenizer", "scheduler"):
        assert f"{folder}/*" in zimage.patterns
    adapter = by_key["adapter"]
    assert adapter.repo == "ostris/zimage_turbo_training_adapter"
    assert adapter.target == registry.ADAPTER_DIR and adapter.patterns == (registry.ADAPTER_FILE,)


@pytest.mark.parametrize("line,message", [
    ("owner/repo main a.gguf", "expected 4 columns (hub repo, revision, files, target folder) but found 3"),
    ("owner/repo main a.gguf target extra", "expected 4 columns"),
    ("not-a-repo main a.gguf target", "'not-a-repo' is not a hub repo name"),
    ("owner/../x main a.gguf target", "is not a hub repo name"),
    ("owner/repo ../main a.gguf target", "is not a valid revision"),
    ("owner/repo main a.gguf,,b.gguf target", "empty entry"),
    ("owner/repo main a.gguf, target", "empty entry"),
    ("owner/repo main ../secret target", "is not a valid file name or pattern"),
    ("owner/repo main /etc/passwd target", "is not a valid file name or pattern"),
    ("owner/repo main a.gguf,a.gguf target", "names the same file twice"),
    ("owner/repo main a.gguf /abs/target", "must be a relative folder name"),
    ("owner/repo main a.gguf ../escape", "must be a relative folder name"),
    ("owner/repo main a.gguf demo", "reserved for the demo models"),
])
def test_malformed_line_names_its_line_number(line, message):
    text = f"# models\n\nowner/ok main ok.gguf ok-folder\n{line}\n"
    with pytest.raises(ModelsFileError) as info:
        parse_models_txt(text)
    assert str(info.value).startswith("models.txt line 4: ")
    assert message in str(info.value)


def test_duplicate_target_names_both_lines():
    with pytest.raises(ModelsFileError, match=r"line 3: target folder 'x' is already used on line 1"):
        parse_models_txt("a/b main f x\n\na/c main g x\n")


def test_empty_file_and_unreadable_file_are_errors(tmp_path):
    with pytest.raises(ModelsFileError, match="lists no models"):
        parse_models_txt("# nothing here\n\n")
    with pytest.raises(ModelsFileError, match="cannot be read"):
        load_models_txt(tmp_path / "missing.txt")
    bad = tmp_path / "models.txt"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ModelsFileError, match="not UTF-8"):
        load_models_txt(bad)
