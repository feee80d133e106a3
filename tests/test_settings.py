from pathlib import Path

import pytest

from studio.settings import ENV_VARS, SettingsError, load_settings, resolve_root


def test_defaults(tmp_path):
    settings = load_settings({"STUDIO_ROOT": str(tmp_path)})
    assert settings.root == tmp_path.resolve()
    assert (settings.port, settings.qwen_port, settings.trainer_port) == (3000, 11435, 8675)
    assert settings.password is None and not settings.auth_enabled
    assert settings.caption_url == "http://127.0.0.1:11435"
    assert settings.demo is False


def test_overrides(tmp_path):
    settings = load_settings({
        "STUDIO_ROOT": str(tmp_path), "PORT": "4000", "QWEN_PORT": "5000", "TRAINER_PORT": "6000",
        "STUDIO_PASSWORD": "pw", "STUDIO_DEMO": "1", "DEV_MODEL_PATH": "/m.gguf", "HF_TOKEN": "hf_x",
        "R2_BUCKET": "bucket",
    })
    assert (settings.port, settings.qwen_port, settings.trainer_port) == (4000, 5000, 6000)
    assert settings.auth_enabled and settings.demo
    assert settings.dev_model_path == Path("/m.gguf")
    assert settings.caption_url == "http://127.0.0.1:5000"
    assert settings.s3_bucket == "bucket"
    assert "hf_x" not in repr(settings) and "pw" not in str(settings.public_dict())


@pytest.mark.parametrize("name,value,words", [
    ("PORT", "abc", "is not a port number"),
    ("TRAINER_PORT", "70000", "out of range"),
    ("STUDIO_DEMO", "maybe", "not a yes/no value"),
    ("CAPTION_QUEUE_SIZE", "0", "too small"),
])
def test_invalid_values_give_one_sentence(tmp_path, name, value, words):
    with pytest.raises(SettingsError) as info:
        load_settings({"STUDIO_ROOT": str(tmp_path), name: value})
    message = str(info.value)
    assert name in message and words in message and message.count("\n") == 0


def test_unwritable_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SettingsError, match="STUDIO_ROOT"):
        resolve_root({"STUDIO_ROOT": str(blocker / "sub")})


def test_root_falls_back_to_cwd_workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = resolve_root({})
    assert root in {Path("/workspace"), (tmp_path / "workspace").resolve()}


def test_readme_lists_every_variable():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [name for name in ENV_VARS if f"`{name}`" not in readme]
    assert not missing, f"README env table lacks {missing}"


def test_readme_opens_with_the_two_commands():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["bash scripts/run.sh", "bash scripts/test.sh"]
    assert readme.index("```bash") < readme.index("## ")
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
