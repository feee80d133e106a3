"""Clone clicked twice: one copy is queued, and the second answer says it made none (200, created false), as
POST /api/jobs answers a repeat."""

from __future__ import annotations

from tests.test_trainer_worker import TINY_CONFIG, make_export


def test_a_second_clone_of_the_same_job_says_it_made_no_new_copy(trainer_app, trainer_client):
    dataset = make_export(trainer_app.config["STUDIO_SETTINGS"].root).name
    body = {"name": "my job", "recipe": "zimage-turbo", "dataset": dataset, "config": TINY_CONFIG}
    source = trainer_client.post("/api/jobs", json=body).get_json()["job"]["id"]
    first = trainer_client.post(f"/api/jobs/{source}/clone", json={"config": {"steps": 8}})
    again = trainer_client.post(f"/api/jobs/{source}/clone", json={"config": {"steps": 8}})
    assert (first.status_code, first.get_json()["created"]) == (201, True)
    assert (again.status_code, again.get_json()["created"]) == (200, False)
    assert again.get_json()["job"]["id"] == first.get_json()["job"]["id"]
    assert len(trainer_app.extensions["job_store"].queue()) == 2
