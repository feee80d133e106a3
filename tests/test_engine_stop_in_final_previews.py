"""Stop asked while the final previews render (every step is trained and saved by then): the run ended with an
internal error ("StopRequested") and the job failed. It completes with its LoRA, without those previews, and says so."""

from __future__ import annotations

from pathlib import Path

from tests.test_engine_train import make_dataset, tiny_config
from trainer.engine import TrainingControl, train


def test_a_stop_during_the_final_previews_completes_the_job_without_them(tmp_path, demo_paths):
    dataset = make_dataset(tmp_path / "datasets" / "toy", count=1)
    job = tmp_path / "job"
    control = TrainingControl(job)

    def stop_when_the_final_previews_start(event: dict) -> None:
        if event.get("phase") == "sampling" and event.get("step") == 3:
            control.request_stop()

    result = train(tiny_config(steps=3, save_every=10), dataset, job, demo_paths, control,
                   stop_when_the_final_previews_start, device="cpu", cache_dir=tmp_path / "cache")
    assert not result["stopped"] and result["steps"] == 3
    assert Path(result["lora_path"]).is_file() and Path(result["lora_path"]).parent.name == "lora"
    assert not (job / "samples" / "step_000003" / "0.png").exists()
    assert (Path(result["lora_path"]).parent / "README.txt").is_file()
    log = (job / "log.txt").read_text()
    assert "the final previews were left out" in log
