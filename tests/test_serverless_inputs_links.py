"""A serverless job's links that are no web address (an unclosed "[", a port past 65535, one longer than the pod's
import takes) are refused with the field's error before anything runs, not as an internal error."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import pytest

from serverless.handler import handler
from tests.test_serverless import GOOD_CONFIG, worker_env  # noqa: F401 - a fixture

NOT_LINKS = ["https://[::1/set.zip", "https://cdn.example:99999/set.zip", "https://cdn.example:port/set.zip",
             "https://cdn.example/" + "a" * 5000 + ".zip"]


@pytest.mark.parametrize("url", NOT_LINKS)
def test_a_dataset_link_that_is_no_web_address_names_its_field(worker_env, url):
    result = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": {"url": url}}})
    assert result["error"].startswith("`dataset.url` must be an http(s) address"), result
    assert result["details"] == [{"field": "dataset.url", "message": "Use an https:// link to a .zip."}]
    several = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "datasets": [{"prefix": "a"}, {"url": url}]}})
    assert [d["field"] for d in several["details"]] == ["datasets[1].url"], several


@pytest.mark.parametrize("url", NOT_LINKS)
def test_a_start_lora_link_that_is_no_web_address_names_its_field(worker_env, url):
    result = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "a"},
                                           "start_lora": {"url": url.replace(".zip", ".safetensors")}}})
    assert result["error"].startswith("`start_lora.url` must be an http(s) address"), result
    assert result["details"][0]["field"] == "start_lora"


@pytest.mark.parametrize("start", [{"key": "loras/a\nb.safetensors"}, {"key": "loras/a\x00.safetensors"},
                                   {"key": "loras/" + "a" * 1100 + ".safetensors"},
                                   {"key": "loras/a.safetensors", "bucket": "bucket\r\n"}])
def test_a_start_lora_key_with_control_characters_or_too_long_names_its_field(worker_env, start):
    """A newline or a NUL in a key (or a bucket) would only fail at the store, after the job started, and would
    reach the job's log as it is."""
    result = handler({"id": "x", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "a"}, "start_lora": start}})
    assert result["error"].startswith("`start_lora.") and result["details"][0]["field"] == "start_lora", result
    assert "Traceback" not in result["error"]
