"""The short plan of benchmarks/gpu_zimage.py (`--plan focus`): the rows issue 15's goals are judged on, most
telling first, for a GPU session too short for every lever row.

The lever rows one at a time were measured once (benchmarks/RESULTS.md); this plan measures the engine as a job
runs it today (flash attention, fused AdamW, the loss read every 10 steps, inputs on the GPU), with and without
torch.compile per block, against the bare diffusers + peft step like for like, then the float8 base the same
way. torch.compile wraps the blocks in place, so each model's compiled rows come after its eager ones.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks import zimage_runs as zr
from benchmarks.zimage_runs import RunSettings

COMPILE_S = 150.0  # the first compiled steps of a block: one to two minutes on an H200


def job_settings(name: str, budget_gb: float | None, **changes) -> RunSettings:
    """The engine as a job runs it: auto checkpointing for `budget_gb` (None: every activation kept)."""
    base = RunSettings(name, checkpointing="auto" if budget_gb else "off", budget_gb=budget_gb, attention="flash",
                       optimizer="adamw-fused", log_every=10, resident=True)
    return replace(base, **changes)


def run_focus(report, shape: dict) -> None:
    from benchmarks import gpu_zimage as gz
    from trainer.engine import compile_blocks

    args, device = report.args, report.device
    step_cost = 8.0 if args.shape == "real" else 1.0
    cache = Path(args.out) / "compile_cache"

    def compiled_rows(model, params, rows, idle: float) -> None:
        rows = [r for r in rows if gz.selected(args, r.name)]
        if not rows:
            return
        if report.left_s() < COMPILE_S and args.shape == "real":
            for settings in rows:
                report.skip(settings.name, f"time budget (compiling takes 1-2 minutes; {report.left_s():.0f} s left)")
            return
        if not compile_blocks.enable(model, device, cache, print):
            for settings in rows:
                report.skip(settings.name, compile_blocks.compile_support(device) or "not compiled")
            return
        for settings in rows:
            gz.measure(report, model, params, shape, settings, 0, idle, warmup=3)
            note_dynamo(report)

    # ---- bf16: the job's step, eager then compiled
    bf16, params = gz.lora_model(shape, args, device)
    gz.measure(report, bf16, params, shape, job_settings("ours bf16, auto for 46 GiB", gz.GOAL_BF16_GIB), step_cost)
    gz.measure(report, bf16, params, shape, job_settings("ours bf16, checkpointing off", None), step_cost)
    with lora_in_bf16(params):  # what the peer trains: is the float32 LoRA what its step costs over the peer's?
        gz.measure(report, bf16, params, shape, job_settings("ours bf16, checkpointing off, LoRA weights in bf16 "
                                                             "(as the peer)", None), step_cost)
    compiled_rows(bf16, params, [  # the first compiled row's warm-up holds the compile
        job_settings("ours bf16 + torch.compile per block, checkpointing off", None, compiled=True),
        job_settings("ours bf16 + torch.compile per block, auto for 46 GiB", gz.GOAL_BF16_GIB, compiled=True)], 0.0)
    del bf16, params
    zr.free(device)

    # ---- the peer on the same weights, like for like
    gz.peer_rows(report, shape, step_cost, (False, True), 0.0)

    # ---- float8 matmuls: eager then compiled
    if not any(gz.selected(args, n) for n in ("float8 matmuls", "24 GB preset", "float8 + torch.compile")):
        return
    if report.left_s() < 4 * step_cost:
        report.skip("float8 rows", "time budget")
        return
    errors: dict[str, float] = {}
    fp8, fp8_params = gz.lora_model(shape, args, device, "float8", matmuls=True, errors=errors)
    gz.record_float8_errors(report, errors)
    gz.measure(report, fp8, fp8_params, shape, job_settings("float8 matmuls, auto for 12 GiB", gz.GOAL_FLOAT8_GIB),
               step_cost)
    gz.measure(report, fp8, fp8_params, shape, job_settings("24 GB preset (float8, auto for 22 GiB)",
                                                            gz.CARD_24_GIB), step_cost)
    gz.measure(report, fp8, fp8_params, shape, job_settings("float8 matmuls, checkpointing off", None), step_cost)
    compiled_rows(fp8, fp8_params, [
        job_settings("float8 + torch.compile per block, checkpointing off", None, compiled=True),
        job_settings("float8 + torch.compile per block, auto for 12 GiB", gz.GOAL_FLOAT8_GIB, compiled=True),
        job_settings("24 GB preset + torch.compile per block (float8, auto for 22 GiB)", gz.CARD_24_GIB,
                     compiled=True)], 0.0)
    del fp8, fp8_params
    zr.free(device)
    if gz.selected(args, "peer SimpleTuner"):
        gz.simpletuner_peer_run(report, shape, step_cost)


@contextlib.contextmanager
def lora_in_bf16(params):
    """The LoRA weights in bf16 inside (the peer's setting), float32 again after."""
    with torch.no_grad():
        for p in params:
            p.data = p.data.to(torch.bfloat16)
    try:
        yield
    finally:
        with torch.no_grad():
            for p in params:
                p.data = p.data.float()


def note_dynamo(report) -> None:
    """What Dynamo did so far, on the last row: frames compiled, graphs, graph breaks, recompiles."""
    from torch._dynamo.utils import counters

    if not report.data["runs"]:
        return
    seen = {k: dict(counters[k]) for k in ("frames", "stats", "graph_break", "recompiles") if counters[k]}
    row = report.data["runs"][-1]
    row["dynamo"] = {k: {str(a): b for a, b in v.items()} for k, v in seen.items()}
    row["note"] = "; ".join(x for x in (row.get("note", ""), f"dynamo {json.dumps(row['dynamo'])[:300]}") if x)
    print(f"dynamo after {row['name']}: {row['dynamo']}", flush=True)
    report.write()
