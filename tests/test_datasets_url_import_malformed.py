"""Links that look like links but cannot be connected to (a port over 65535, a port that is no number, an unclosed
IPv6 bracket), pasted or reached through a redirect: each is one sentence, never an internal error or a job that
fails with "Unexpected error: ValueError"."""

from __future__ import annotations

import pytest

import app as datasets_app
from tests import test_datasets_support as support
from tests.helpers import files_handler, serving
from tests.test_datasets_support import wait_job

ds_app, client = support.ds_app, support.client

REDIRECTS = {"/to-bad-port": "http://127.0.0.1:99999/set.zip", "/to-word-port": "http://127.0.0.1:web/set.zip",
             "/to-bracket": "http://[::1/set.zip"}


@pytest.fixture(scope="module")
def web():
    with serving(files_handler({}, REDIRECTS)) as url:
        yield url


@pytest.mark.parametrize("url", ["https://example.com:99999/set.zip", "https://example.com:abc/set.zip",
                                 "http://[::1/set.zip", "https://huggingface.co:99999/datasets/a/b",
                                 "https://example.com:0/set.zip"])
def test_a_link_with_a_port_that_cannot_be_is_refused_at_once(client, url):
    dataset_id = client.post("/api/datasets", json={"name": "Linked"}).get_json()["id"]
    answer = client.post(f"/api/datasets/{dataset_id}/import-url", json={"url": url})
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["error"] == "Give an http:// or https:// link to a ZIP or an image."
    checked = client.post("/api/link-check", json={"url": url})  # the dialog's check under the field says so too
    assert checked.status_code == 422 and checked.get_json()["error"] == answer.get_json()["error"]
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["jobs"]["import"] is None  # no job was started


@pytest.mark.parametrize("path", sorted(REDIRECTS))
def test_a_redirect_to_a_link_that_cannot_be_fails_with_a_sentence(make_settings, web, path):
    lan = datasets_app.create_app(make_settings(ALLOW_PRIVATE_URLS="1")).test_client()
    dataset_id = lan.post("/api/datasets", json={"name": "Linked"}).get_json()["id"]
    started = lan.post(f"/api/datasets/{dataset_id}/import-url", json={"url": web + path})
    assert started.status_code == 202, started.get_json()
    job = wait_job(lan, f"/api/datasets/{dataset_id}/imports/{started.get_json()['id']}")
    assert job["status"] == "failed"
    assert job["error"] == "The link redirects to something that is not a web address."
