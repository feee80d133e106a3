"""The serverless worker's input checks name the field at fault, so a caller's UI can point at it."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are used as arguments
from __future__ import annotations

import pytest

from serverless.handler import handler
from tests.test_serverless import GOOD_CONFIG, worker_env  # noqa: F401 - a fixture


@pytest.mark.parametrize("prefix", ["../..", "a/../b", "loras/./x", "a\\\\b"])
def test_a_bad_output_prefix_names_its_field(worker_env, prefix):
    result = handler({"id": "bad-prefix", "input": {"job_config": GOOD_CONFIG, "dataset": {"prefix": "sets/a"},
                                                   "output_prefix": prefix}})
    assert result["error"].startswith(f"The prefix {prefix!r} is not valid")
    assert result["details"] == [{"field": "output_prefix", "message": "Not a valid prefix."}]
