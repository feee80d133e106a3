"""README "## API": every error is `{"error": "...", "details": [...]}`. Stop the pod refused (not a RunPod pod, a
job running) answered `{"error"}` alone, so a script reading `details` as the README says met a KeyError."""

from __future__ import annotations

import trainer as trainer_app


def test_a_refused_pod_stop_answers_the_documented_error_shape(make_settings):
    client = trainer_app.create_app(make_settings()).test_client()
    refused = client.post("/api/pod/stop")
    assert refused.status_code == 409
    body = refused.get_json()
    assert set(body) == {"error", "details"} and body["details"] == []
    assert "not a RunPod pod" in body["error"]
