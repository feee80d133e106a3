"""The job page's loss chart reads /api/jobs/<id>/metrics with the browser's JSON.parse, which refuses NaN. An
evaluation of a diverging run is written by Python as `"eval_loss": NaN`; sent on as it is, that one line made every
later read of the metrics fail, and the chart, the learning rate and the evaluation figure stopped for good."""

from __future__ import annotations

import json

from tests.test_trainer_worker import TINY_CONFIG, make_export


def _strict(text: str):
    """JSON as a browser reads it: NaN and Infinity are errors."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_nan_evaluation_comes_back_as_null_and_the_rest_still_reads(trainer_client, trainer_app):
    root = trainer_app.config["STUDIO_SETTINGS"].root
    dataset = make_export(root).name
    body = {"name": "diverging", "recipe": "zimage-turbo", "dataset": dataset, "config": TINY_CONFIG}
    job_id = trainer_client.post("/api/jobs", json=body).get_json()["job"]["id"]
    job_dir = trainer_app.config["STUDIO_WORKSPACE"].jobs / job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.5, "lr": 1e-4}) + "\n"
                                                   for s in (1, 2, 3)))
    (job_dir / "eval.jsonl").write_text(json.dumps({"step": 0, "eval_loss": 0.7}) + "\n"
                                        + json.dumps({"step": 2, "eval_loss": float("nan"),
                                                      "holdout_loss": float("inf")}) + "\n")
    answer = trainer_client.get(f"/api/jobs/{job_id}/metrics?after=-1")
    assert answer.status_code == 200
    data = _strict(answer.get_data(as_text=True))
    assert [p["step"] for p in data["points"]] == [1, 2, 3]
    assert data["evals"] == [{"step": 0, "eval_loss": 0.7}, {"step": 2, "eval_loss": None, "holdout_loss": None}]
