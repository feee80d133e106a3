"""What a link would import, before importing it: a Hugging Face dataset is listed on the hub (images, captions,
ZIPs, Parquet files, bytes, whether it is over MAX_UPLOAD_MB and how many first images would fit); any other link
is known once downloaded; a link the import would refuse says why at once. The local stand-in of the hub."""

from __future__ import annotations

import pytest

import app as datasets_app
from app import link_check
from tests.test_datasets_hub_import import HF, client, hub  # noqa: F401 - the stand-in hub and its studio
from tests.test_datasets_import_limit import LOOSE


def _check(client, url):  # noqa: F811
    return client.post("/api/link-check", json={"url": url})


def test_a_hub_dataset_is_counted_before_it_is_imported(client, hub):  # noqa: F811
    body = _check(client, f"{HF}/me/portraits").get_json()
    assert body == {"kind": "hub", "dataset": "me/portraits", "label": "me/portraits", "revision": "main",
                    "commit": body["commit"], "split": None, "images": 4, "captions": 3, "zips": 1, "parquet": 0,
                    "videos": 0, "bytes": body["bytes"], "max_bytes": 2**20, "too_large": False, "partial": False,
                    "fits_images": None}
    assert 0 < body["bytes"] < 2**20
    split = _check(client, f"{HF}/me/tables/viewer/default/test").get_json()
    assert (split["label"], split["split"], split["parquet"], split["images"]) == \
        ("me/tables (test split)", "test", 1, 0)
    assert hub.file_requests() == []  # nothing downloaded, only listed


def test_a_dataset_over_the_limit_says_how_many_first_images_fit(client, hub):  # noqa: F811
    hub.add("datasets/me/wide", {**LOOSE, **{f"zz/{n}.png": b"\0" * 400_000 for n in range(4)}})
    body = _check(client, f"{HF}/me/wide").get_json()
    assert body["too_large"] and body["images"] == 9
    assert body["fits_images"] == 7  # the five small photos and two of the large ones, sorted by name


@pytest.mark.parametrize("url, status, words", [
    (f"{HF}/me/nothing-here", 422, "was not found on the hub"),
    (f"{HF}/me/gated", 422, "is gated"),
    (f"{HF}/me/portraits/tree/main/missing", 422, "has no folder 'missing'"),
    ("ftp://example.com/a.zip", 422, "http:// or https://"),
])
def test_a_link_the_import_would_refuse_says_why_at_once(client, url, status, words):  # noqa: F811
    response = _check(client, url)
    assert response.status_code == status and words in response.get_json()["error"]


def test_any_other_link_is_known_once_downloaded(make_settings):
    own_network = datasets_app.create_app(make_settings(ALLOW_PRIVATE_URLS=1)).test_client()
    assert _check(own_network, "http://127.0.0.1:9/set.zip").get_json() == {"kind": "link"}


def test_a_private_address_or_a_name_that_does_not_resolve_is_said_under_the_link(client):  # noqa: F811
    """What the import would fail with once started is said as the link is typed."""
    private = _check(client, "http://192.168.1.20/set.zip")
    assert private.status_code == 422 and "is a private or local address" in private.get_json()["error"]
    assert "ALLOW_PRIVATE_URLS=1" in private.get_json()["error"]
    local = _check(client, "http://localhost:8675/api/jobs")
    assert local.status_code == 422 and "private or local address" in local.get_json()["error"]
    unknown = _check(client, "https://no-such-host.invalid/set.zip")
    assert unknown.status_code == 422 and "could not be found (DNS)" in unknown.get_json()["error"]


def test_a_huge_listing_stops_and_says_so(client, hub, monkeypatch):  # noqa: F811
    monkeypatch.setattr(link_check, "LISTING_CAP", 3)
    body = _check(client, f"{HF}/me/portraits").get_json()
    assert body["partial"] is True and body["images"] + body["captions"] + body["zips"] <= 3


def test_the_check_needs_the_password(make_settings):
    protected = datasets_app.create_app(make_settings(STUDIO_PASSWORD="pw")).test_client()
    assert protected.post("/api/link-check", json={"url": "https://example.com/a.zip"}).status_code == 401
