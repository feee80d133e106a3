"""Variants: one request queued two to four times with one setting changed, all or none, each named for
its value, the rest (data, seed) the same; the compare page opens on them."""

from __future__ import annotations

import pytest

from tests.test_trainer_worker import TINY_CONFIG, make_export


@pytest.fixture
def client(trainer_app):
    make_export(trainer_app.config["STUDIO_SETTINGS"].root)
    return trainer_app.test_client()


def _body(**vary):
    return {"name": "cat", "dataset": "tiny-set", "config": {**TINY_CONFIG, "name": "cat"}, "vary": vary}


def test_three_learning_rates_are_queued_side_by_side(client):
    response = client.post("/api/jobs/variants", json=_body(field="learning_rate", values=[1e-4, 2e-4, 4e-4]))
    assert response.status_code == 201, response.get_json()
    data = response.get_json()
    jobs = data["jobs"]
    assert [j["config"]["learning_rate"] for j in jobs] == [1e-4, 2e-4, 4e-4]
    assert [j["config"]["name"] for j in jobs] == ["cat-lr0.0001", "cat-lr0.0002", "cat-lr0.0004"]
    assert [j["name"] for j in jobs] == ["cat · Learning rate 0.0001", "cat · Learning rate 0.0002",
                                         "cat · Learning rate 0.0004"]  # the setting as the form names it
    assert len({j["config"]["seed"] for j in jobs}) == 1 and len({j["dataset_version"] for j in jobs}) == 1
    assert all(j["status"] == "queued" for j in jobs)
    assert data["compare_url"] == "/compare?jobs=" + ",".join(j["id"] for j in jobs)
    assert data["estimated_duration_s"] > 0
    assert client.get(data["compare_url"]).status_code == 200
    assert len(client.get("/api/jobs").get_json()["queue"]) == 3


def test_the_compare_page_of_a_link_with_a_deleted_run_shows_the_others_and_says_so(client):
    jobs = client.post("/api/jobs/variants", json=_body(field="learning_rate", values=[1e-4, 2e-4, 4e-4])
                       ).get_json()["jobs"]
    client.delete(f"/api/jobs/{jobs[2]['id']}")
    page = client.get(f"/compare?jobs={','.join(j['id'] for j in jobs)},../../etc")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    said = "2 of the runs in this link are no longer on this pod (deleted, or in Recently deleted): "
    assert f"{said}{jobs[2]['id']}, ../../etc." in text
    assert jobs[0]["id"] in text and jobs[1]["id"] in text and "Pick two to four jobs" not in text


def test_a_compare_link_of_more_runs_than_it_shows_says_which_are_left_out(client):
    jobs = client.post("/api/jobs/variants", json=_body(field="learning_rate", values=[1e-4, 2e-4, 4e-4, 8e-4])
                       ).get_json()["jobs"]
    ids = [j["id"] for j in jobs] + ["fifth-run", "sixth-run"]
    text = client.get(f"/compare?jobs={','.join(ids)}").get_data(as_text=True)
    assert "Compare shows 4 runs at most: 2 more in this link are left out (fifth-run, sixth-run)." in text
    assert "compare-left-out" not in client.get(f"/compare?jobs={','.join(ids[:4])}").get_data(as_text=True)


def test_choices_and_lists_name_their_variants_too(client):
    jobs = client.post("/api/jobs/variants", json=_body(field="lora_targets", values=["all", "attention"])
                       ).get_json()["jobs"]
    assert [j["config"]["name"] for j in jobs] == ["cat-layersall", "cat-layersattention"]
    body = _body(field="resolutions", values=[[64], [64, 96]])
    jobs = client.post("/api/jobs/variants", json=body).get_json()["jobs"]
    assert [j["config"]["name"] for j in jobs] == ["cat-res64", "cat-res64_96"]
    # a LoRA against a LyCORIS LoKr of the same data, and LoKr factors
    jobs = client.post("/api/jobs/variants", json=_body(field="network", values=["lora", "lokr"])).get_json()["jobs"]
    assert [(j["config"]["name"], j["config"]["network"]) for j in jobs] == [("cat-lora", "lora"), ("cat-lokr", "lokr")]
    body = _body(field="lokr_factor", values=[8, 16])
    body["config"]["network"] = "lokr"
    jobs = client.post("/api/jobs/variants", json=body).get_json()["jobs"]
    assert [j["config"]["name"] for j in jobs] == ["cat-lokr-f8", "cat-lokr-f16"]


def test_a_bad_value_queues_none_of_them(client):
    response = client.post("/api/jobs/variants", json=_body(field="rank", values=[8, 0, 9999]))
    assert response.status_code == 422
    data = response.get_json()
    assert data["error"].startswith("Not queued: LoRA rank 0:")
    assert [d["variant"] for d in data["details"]] == ["0", "9999"]
    assert client.get("/api/jobs").get_json()["jobs"] == []


@pytest.mark.parametrize("vary, message", [
    ({"field": "learning_rate", "values": [1e-4]}, "Give 2 to 4 values"),
    ({"field": "learning_rate", "values": [1e-4, 2e-4, 3e-4, 4e-4, 5e-4]}, "Give 2 to 4 values"),
    ({"field": "learning_rate", "values": [1e-4, 0.0001]}, "must differ"),
    ({"field": "name", "values": ["a", "b"]}, "not a training setting that variants can change"),
    ({"field": "colour", "values": [1, 2]}, "not a training setting"),
    ({"field": "rank"}, "'vary' must be"),
])
def test_what_cannot_vary_is_said(client, vary, message):
    response = client.post("/api/jobs/variants", json=_body(**vary))
    assert response.status_code == 422 and message in response.get_json()["error"]


def test_a_repeated_request_with_its_key_queues_them_once(client):
    headers = {"Idempotency-Key": "variants-1"}
    first = client.post("/api/jobs/variants", json=_body(field="rank", values=[4, 8]), headers=headers)
    again = client.post("/api/jobs/variants", json=_body(field="rank", values=[4, 8]), headers=headers)
    assert [j["id"] for j in first.get_json()["jobs"]] == [j["id"] for j in again.get_json()["jobs"]]
    assert again.get_json()["created"] is False
    assert len(client.get("/api/jobs").get_json()["jobs"]) == 2


def test_a_variant_that_fails_to_be_queued_takes_the_others_back(client, monkeypatch):
    from trainer import variants

    calls = []

    def flaky(payload, key=None):
        calls.append(payload["name"])
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(payload, key)

    real = variants.create_job
    monkeypatch.setattr(variants, "create_job", flaky)
    response = client.post("/api/jobs/variants", json=_body(field="rank", values=[4, 8, 16]))
    assert response.status_code >= 500  # the disk-full answer (507), with its sentence
    assert client.get("/api/jobs").get_json()["jobs"] == []  # the first one was taken back


def test_a_text_setting_left_empty_is_a_variant_too(client):
    """Does keeping the class pay? preserve_class off (empty) beside on, named for it."""
    body = _body(field="preserve_class", values=["", "person"])
    jobs = client.post("/api/jobs/variants", json=body).get_json()["jobs"]
    assert [j["config"]["preserve_class"] for j in jobs] == ["", "person"]
    assert [j["config"]["name"] for j in jobs] == ["cat-classnone", "cat-classperson"]
    assert [j["name"] for j in jobs] == ["cat · Preserve the class none", "cat · Preserve the class person"]


def test_optimizers_compared_each_take_their_usual_learning_rate(client):
    """Prodigy's rate is a multiplier (1), AdamW's the step size (1e-4): a variant takes its optimizer's, unless the
    rate was chosen by hand."""
    body = _body(field="optimizer", values=["adamw", "prodigy"])
    body["config"]["learning_rate"] = 1e-4
    jobs = client.post("/api/jobs/variants", json=body).get_json()["jobs"]
    assert [(j["config"]["optimizer"], j["config"]["learning_rate"]) for j in jobs] == [("adamw", 1e-4),
                                                                                      ("prodigy", 1.0)]
    assert [j["config"]["name"] for j in jobs] == ["cat-optimizeradamw", "cat-optimizerprodigy"]
    body["config"]["learning_rate"] = 3e-4  # chosen: every variant keeps it (the form warns about Prodigy's)
    jobs = client.post("/api/jobs/variants", json=body).get_json()["jobs"]
    assert [j["config"]["learning_rate"] for j in jobs] == [3e-4, 3e-4]


def test_two_close_values_get_names_of_their_own():
    from trainer.variants import value_text

    assert value_text(0.0002) == "0.0002" and value_text(5e-05) == "5e-05" and value_text(1.0) == "1"
    assert value_text(1.0000001) != value_text(1.0000002)  # six digits made them one name, and one LoRA name
