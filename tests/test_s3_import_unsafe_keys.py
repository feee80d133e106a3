"""Keys a bucket may hold that lead out of the import's folder ("../x.png", "a/../../x.png"): never written outside
it, and said in the import's report as skipped with the reason, instead of vanishing without a word. A moto S3
server stands in for the bucket."""

from __future__ import annotations

import pytest

from tests.test_s3_import import make_client, moto, png, wait_job  # noqa: F401 - moto is a fixture


@pytest.mark.parametrize("limit", [None, 1])
def test_a_key_that_leads_out_of_the_folder_is_skipped_with_its_reason(moto, make_settings, studio_root,  # noqa: F811
                                                                       limit):
    moto.make_bucket("odd-keys", {
        "a.png": png((250, 0, 0)),
        "../escape.png": png((0, 250, 0)),
        "sub/../../up.png": png((0, 0, 250)),
    })
    client = make_client(make_settings, **moto.env(S3_BUCKET="odd-keys"))
    dataset = client.post("/api/datasets", json={"name": "Odd"}).get_json()
    started = client.post(f"/api/datasets/{dataset['id']}/import-s3", json={"prefix": "", "limit": limit})
    assert started.status_code == 202, started.get_json()
    state = wait_job(client, f"/api/datasets/{dataset['id']}/import-s3/{started.get_json()['id']}")
    assert state["status"] == "completed", state
    assert state["result"]["imported"] == ["a.png"]
    skipped = {s["name"]: s["reason"] for s in state["result"]["skipped"]}
    assert set(skipped) == {"../escape.png", "sub/../../up.png"}
    assert all(reason == "its key leads out of the folder ('..'), so it was not downloaded" for reason in
               skipped.values())
    assert state["result"]["source"]["files"] == 3
    assert not list(studio_root.rglob("escape.png")) and not list(studio_root.rglob("up.png"))
