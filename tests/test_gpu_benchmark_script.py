"""benchmarks/gpu_zimage.py, the one-shot GPU benchmark, checked on the CPU with the tiny model shape:
every run of the levers table, the peer, the FLOP columns and the report files come out (no timing is
asserted; the GPU figures come from a GPU machine)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_the_gpu_benchmark_runs_end_to_end_on_the_tiny_shape(tmp_path, capsys):
    from benchmarks import gpu_zimage

    assert gpu_zimage.main(["--shape", "tiny", "--device", "cpu", "--size", "64", "--steps", "1", "--rounds", "1",
                            "--warmup", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu_zimage.json").read_text())
    names = [r["name"] for r in data["runs"]]
    assert names[0] == "bf16 baseline (engine as measured before)"
    assert {"+ fused AdamW over the LoRA parameters", "+ loss read every 10 steps (no host sync per step)",
            "float8 matmuls + levers, auto for 12 GiB", "24 GB preset (float8, auto, 22 GB budget)",
            "+ preserve_class (a pass without the LoRA and a second training pass)",
            "Prodigy instead (optimizer prodigy: it reads back per LoRA tensor)"} <= set(names)
    assert any(n.startswith("peer: diffusers + peft") for n in names)
    assert not [r for r in data["runs"] if r.get("error")]
    timed = [r["name"] for r in data["runs"] if "one evaluation (12 forward passes)" in (r.get("note") or "")]
    assert timed == ["+ inputs resident on the GPU"]  # the evaluation loss's cost, once, against that row's step
    for row in data["runs"]:
        assert row["s_per_step"] > 0 and 0 < row["mfu"] <= row["hfu"] and row["x_floor"] > 0
    skipped = {s["name"]: s["why"] for s in data["skipped"]}
    assert "CUDA" in skipped["+ torch.compile per block (bf16)"]  # the compiled path says why it did not run
    assert data["verdicts"] == ["a check of the script (tiny shape or no GPU): no goal is judged"]
    markdown = (tmp_path / "gpu_zimage.md").read_text()
    assert "| run | s/step | s/sample | peak GiB | MFU |" in markdown
    assert "MFU" in capsys.readouterr().out


def test_the_render_benchmark_runs_on_the_tiny_shape(capsys):
    """benchmarks/try_render.py's full-size path (hooks vs merged on the architecture with random weights),
    checked with the tiny shape on the CPU; gpu_run.sh runs it with the real shape."""
    from benchmarks import try_render

    assert try_render.main(["--shape", "tiny", "--device", "cpu", "--size", "64", "--steps", "2",
                            "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "tiny Z-Image transformer, random weights" in out and "ratio hooks/merged: " in out


def test_the_lokr_layer_benchmark_runs_on_a_few_tokens(capsys):
    """benchmarks/lokr_layer.py (the LoKr training layer vs peft's, a LoRA and the bare layer) on the real layer
    shapes with 8 tokens, so the GPU run finds it working."""
    from benchmarks import lokr_layer

    assert lokr_layer.main(["--tokens", "8", "--rounds", "1", "--factors", "16", "--device", "cpu"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| attention")]
    assert [row.split(" | ")[1] for row in rows] == ["bare", "lora r32", "ours f16", "peft f16"]
