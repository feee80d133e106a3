"""A price that is not one (GPU_PRICE_PER_HOUR=inf, nan, 1e9; RunPod answering true) is no price: never
"Infinity" in the JSON the pages parse (JSON.parse refuses it: the dashboard and the job pages lose every figure),
never a "$NaN" or a billion-dollar "≈ $" figure. RunPod's own price is read instead when the pod has one."""

from __future__ import annotations

import json

import pytest

import trainer as trainer_app
from studio import pod_price
from studio.pod_price import PodPrice, read_runpod_price
from tests.test_pod_price import _on_runpod, runpod  # noqa: F401 - the RunPod stand-in, a fixture


def _strict(data: bytes):
    """json.loads as a browser's JSON.parse: Infinity and NaN are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize("given", ["inf", "nan", "1e9"])
def test_a_setting_that_is_not_a_price_is_ignored_and_the_pages_still_parse(make_settings, given, caplog):
    client = trainer_app.create_app(make_settings(GPU_PRICE_PER_HOUR=given)).test_client()
    for path in ("/api/pod", "/api/jobs"):
        answer = client.get(path)
        assert answer.status_code == 200
        _strict(answer.data)
    assert _strict(client.get("/api/pod").data)["price"] is None
    assert "GPU_PRICE_PER_HOUR" in caplog.text and "ignored" in caplog.text


def test_an_absurd_setting_falls_back_to_the_pods_price_on_runpod(make_settings, runpod):  # noqa: F811
    price = PodPrice(_on_runpod(make_settings, runpod, GPU_PRICE_PER_HOUR="inf"))
    assert price.knowable and price.read_now().per_hour == 2.49 and price.current().source == "runpod"
    assert PodPrice(make_settings(GPU_PRICE_PER_HOUR="2.5")).current().public() == {"per_hour": 2.5,
                                                                                     "source": "setting"}


def test_runpod_answering_true_or_nonsense_is_no_price(make_settings, runpod):  # noqa: F811
    runpod.answer = (200, json.dumps({"adjustedCostPerHr": True, "costPerHr": "3.19"}).encode())
    assert read_runpod_price(_on_runpod(make_settings, runpod)).per_hour == 3.19
    runpod.answer = (200, b'{"adjustedCostPerHr": NaN, "costPerHr": Infinity}')
    assert read_runpod_price(_on_runpod(make_settings, runpod)) is None


def test_what_counts_as_dollars_an_hour():
    assert [pod_price.dollars_per_hour(v) for v in (2.49, "0.34", 999.0)] == [2.49, 0.34, 999.0]
    nonsense = (0, -1, float("nan"), float("inf"), 1000, True, None, "x")
    assert [pod_price.dollars_per_hour(v) for v in nonsense] == [None] * len(nonsense)
