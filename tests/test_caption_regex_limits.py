"""Find & replace with a regular expression: a pattern that backtracks without end is stopped with a sentence."""

from __future__ import annotations

import pytest

from app.caption_regex import TooSlow, compile_find, replace_all
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

CATASTROPHIC = r"(a|a)+$"  # 2^n ways to match n letters, none of them before "!"
BAIT = "a" * 40 + "!"


def _captions(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


@pytest.fixture
def captioned(client, dataset_id) -> str:
    job = upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a red car"),
                                      ("bait.png", image_bytes(2)), ("bait.txt", BAIT.encode())])
    assert job["status"] == "completed", job
    return f"/api/datasets/{dataset_id}/captions/replace"


@pytest.mark.parametrize("apply", [False, True])
def test_a_catastrophic_pattern_is_stopped_with_a_422_and_writes_nothing(client, dataset_id, captioned, apply):
    response = client.post(captioned, json={"find": CATASTROPHIC, "replace": "x", "regex": True, "apply": apply})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error.startswith("This pattern takes too long on caption bait.png: simplify it"), error
    assert _captions(client, dataset_id) == {"a.png": "a red car", "bait.png": BAIT}
    assert client.get(f"/api/datasets/{dataset_id}/captions/undo").get_json() == {"available": False}


def test_the_pattern_of_the_report_and_normal_patterns_still_work(client, dataset_id, captioned):
    reported = client.post(captioned, json={"find": r"(a+)+$", "replace": "x", "regex": True}).get_json()
    assert reported["replacements"] == 0  # the regex package sees through this one
    preview = client.post(captioned, json={"find": r"(\w+) car", "replace": r"car (\1)", "regex": True}).get_json()
    assert preview["applied"] is False and preview["rows"] == [
        {"name": "a.png", "before": "a red car", "after": "a car (red)", "count": 1}]
    assert client.post(captioned, json={"find": "A+!", "replace": "b", "regex": True}).get_json()["images"] == 1
    assert client.post(captioned, json={"find": "A+!", "replace": "b", "regex": True,
                                        "case_sensitive": True}).get_json()["images"] == 0
    literal = client.post(captioned, json={"find": "a.", "replace": "x"}).get_json()
    assert literal["replacements"] == 0  # the dot is literal without "Regular expression"
    applied = client.post(captioned, json={"find": r"\bred\b", "replace": r"blue\\", "regex": True, "apply": True})
    assert applied.status_code == 200 and applied.get_json()["images"] == 1
    assert _captions(client, dataset_id) == {"a.png": "a blue\\ car", "bait.png": BAIT}
    assert client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()["restored"] == 1
    assert _captions(client, dataset_id)["a.png"] == "a red car"


def test_invalid_patterns_and_replacements_still_say_so(client, dataset_id, captioned):
    bad = client.post(captioned, json={"find": "(", "regex": True})
    assert bad.status_code == 422 and bad.get_json()["error"].startswith("The regular expression is invalid")
    group = client.post(captioned, json={"find": "car", "replace": r"\2", "regex": True})
    assert group.status_code == 422 and group.get_json()["error"].startswith("The replacement is invalid")


def test_many_slow_captions_share_one_budget():
    pattern = compile_find(CATASTROPHIC, is_regex=True, case_sensitive=False)
    captions = [(f"{n}.png", BAIT) for n in range(20)]
    with pytest.raises(TooSlow, match=r"takes too long over 20 captions \(it stopped at caption 0.png\)"):
        replace_all(pattern, "x", captions, caption_seconds=5.0, request_seconds=0.2)
    with pytest.raises(TooSlow, match="takes too long on caption 0.png"):
        replace_all(pattern, "x", captions, caption_seconds=0.1, request_seconds=5.0)
    fine = replace_all(compile_find("A!", is_regex=False, case_sensitive=False), "b", captions[:2])
    assert [(c.name, c.after, c.count) for c in fine] == [("0.png", "a" * 39 + "b", 1), ("1.png", "a" * 39 + "b", 1)]
