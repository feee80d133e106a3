"""README "## API" as a script reads it: its curl example, run against the two Flask apps with the bearer password,
answers what the README says (fields, status codes, the error shape), and every /api route the section names is a
route of the dataset manager or the trainer. A change to either side that leaves the other behind fails here."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import app as datasets_app
import trainer
from tests.test_datasets_support import image_bytes, wait_job, zip_bytes

README = Path(__file__).resolve().parent.parent / "README.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _api_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("\n## API\n"):text.index("\n## RunPod Serverless worker")]


def _concrete(path: str) -> list[str]:
    """The request paths a documented path stands for: `<id>`, `$JOB` filled in, `a|b` and `[/<entry>]` spelt out,
    the query left off."""
    path = re.sub(r"<[^>]+>|\$[A-Z]+", "1", path)
    base, _, query = path.partition("?")
    paths = [base]
    if "[" in base:
        paths = [base.replace("[", "").replace("]", ""), re.sub(r"\[[^\]]*\]", "", base)]
    head, _, last = paths[0].rpartition("/")
    alternatives = last.split("|")[1:] + query.split("|")[1:]
    paths = [p.split("|")[0] for p in paths] + [f"{head}/{other}" for other in alternatives]
    return [p + "1" if p.endswith("/") else p for p in paths]


def _client(one):
    """A test client that sends the password as curl's -H "Authorization: Bearer $STUDIO_PASSWORD" does."""
    client = one.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer pw"
    return client


@pytest.fixture
def apps(make_settings):
    return (datasets_app.create_app(make_settings(STUDIO_PASSWORD="pw")),
            trainer.create_app(make_settings(STUDIO_DEMO=1, STUDIO_PASSWORD="pw")))


def test_every_documented_route_exists_and_asks_for_the_password(apps):
    documented = set(re.findall(r"(/api/[^\s`\"'),;]*)", _api_section()))
    assert len(documented) > 50  # the section was found and read
    adapters = [(one, one.url_map.bind("localhost")) for one in apps]
    for path in sorted(documented):
        for concrete in _concrete(path):
            found = [(one, method) for one, adapter in adapters for method in METHODS
                     if adapter.test(concrete, method)]
            assert found, f"README names {path} ({concrete}): no route answers it"
            one, method = found[0]
            assert one.test_client().open(concrete, method=method).status_code == 401, concrete


def test_the_readme_example_runs_as_written(apps):
    datasets, trainer_app = (_client(one) for one in apps)
    created = datasets.post("/api/datasets", json={"name": "My cat", "trigger_word": "sks"})
    assert created.status_code == 201
    dataset_id = created.get_json()["id"]
    photos = zip_bytes([(f"img{seed}.png", image_bytes(seed, (512, 512))) for seed in range(3)]
                       + [("img0.txt", "a cat on a sofa")])
    uploaded = datasets.post(f"/api/datasets/{dataset_id}/upload", content_type="multipart/form-data",
                             data={"files": [(io.BytesIO(photos), "cat-photos.zip")]})
    assert uploaded.status_code in (200, 202) and uploaded.get_json()["kind"] == "import"
    wait_job(datasets, f"/api/datasets/{dataset_id}/imports/{uploaded.get_json()['id']}")  # the README's poll
    shown = datasets.get(f"/api/datasets/{dataset_id}").get_json()
    assert shown["images"] == 3 and shown["captioned"] == 1 and shown["bytes"] > 0  # images, captioned, size
    assert shown["jobs"]["import"]["status"] == "completed"  # import progress
    assert datasets.get(f"/api/datasets/{dataset_id}/caption").get_json() == {"job": None}

    started = datasets.post(f"/api/datasets/{dataset_id}/export", json={"name": "my-cat"})
    assert started.status_code == 202
    export = wait_job(datasets, f"/api/datasets/{dataset_id}/export", key="job")
    assert export["status"] == "completed" and export["result"]["left_out"] == []

    body = {"name": "my-cat", "dataset": "my-cat", "config": {"steps": 2000, "trigger_word": "sks"}}
    checked = trainer_app.post("/api/jobs/validate", json=body)
    assert checked.status_code == 200 and checked.get_json()["ok"]
    queued = trainer_app.post("/api/jobs", json=body)
    assert queued.status_code == 201 and queued.get_json()["created"]
    job_id = queued.get_json()["job"]["id"]
    detail = trainer_app.get(f"/api/jobs/{job_id}").get_json()
    assert {"status", "step", "eta_s"} <= set(detail["job"]) and "lora" in detail  # "lora" filled once completed
    assert detail["job"]["status"] == "queued" and detail["job"]["total_steps"] == 2000
    log = trainer_app.get(f"/api/jobs/{job_id}/log?offset=0")
    assert log.status_code == 200 and {"offset", "text"} <= set(log.get_json())


def test_errors_have_the_documented_shape_and_statuses(apps):
    datasets, trainer_app = (_client(one) for one in apps)
    cases = [
        (datasets.post("/api/datasets", data="{bad", content_type="application/json"), 400),
        (datasets.get("/api/datasets/nope"), 404),
        (trainer_app.get("/api/jobs/nope"), 404),
        (apps[1].test_client().get("/api/jobs"), 401),
        (trainer_app.post("/api/jobs/validate", json={"name": "x", "dataset": "nope"}), 422),
        (trainer_app.post("/api/pod/stop"), 409),
    ]
    for response, status in cases:
        assert response.status_code == status, response.get_json()
        body = response.get_json()
        assert isinstance(body["error"], str) and body["error"] and isinstance(body["details"], list)


def test_the_image_list_pages_as_documented(apps):
    datasets = _client(apps[0])
    dataset_id = datasets.post("/api/datasets", json={"name": "Pages"}).get_json()["id"]
    photos = zip_bytes([(f"img{seed}.png", image_bytes(seed)) for seed in range(3)])
    job = datasets.post(f"/api/datasets/{dataset_id}/upload?wait=20",
                        content_type="multipart/form-data", data={"files": [(io.BytesIO(photos), "p.zip")]})
    wait_job(datasets, f"/api/datasets/{dataset_id}/imports/{job.get_json()['id']}")
    page = datasets.get(f"/api/datasets/{dataset_id}/images?sort=name&limit=2&offset=1").get_json()
    assert page["total"] == 3 and page["offset"] == 1 and page["limit"] == 2
    assert [image["name"] for image in page["images"]] == ["img1.png", "img2.png"]
    assert datasets.get(f"/api/datasets/{dataset_id}/images?filter=uncaptioned").get_json()["total"] == 3
