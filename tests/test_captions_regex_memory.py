"""Find & replace cannot take a worker's memory: a pattern whose counted repeats the regex package would write out by
the million (`a{4294967294}` asks for all the memory there is) is refused before it compiles, and a replacement that
grows every caption stops at the first caption past the limit instead of building them all."""

from __future__ import annotations

import pytest

from app.caption_regex import PATTERN_ITEMS, TooBig, TooLong, compile_find, replace_all, written_out
from app.captions import CAPTION_MAX
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id


@pytest.mark.parametrize(("pattern", "items"), [
    ("red", 3), (r"(\w+) car", 5), ("a{3}", 3), ("(?:ab){10}", 20), ("(?:a{10}){10}", 100), ("a{2,5}b{,4}", 9),
    ("a{5,}", 5), (r"[{}]{1000}", 1000), (r"\{100\}", 5), (r"\p{L}+", 1), ("a{,}", 4), ("(a|b)", 2),
    ("(?P<x>a){3}(?P=x)", 4), ("(?i)ab", 3), ("a*?b++", 2), ("(?<=a)b{4}", 5)])
def test_counted_repeats_are_written_out_in_the_estimate(pattern, items):
    assert written_out(pattern) == items


@pytest.mark.parametrize("pattern", ["a{4294967294}", "(?:a{1000}){100}", "(?:(?:(?:a{100}){100}){100}){100}",
                                     "x" * 10_001])
def test_a_pattern_too_big_to_compile_is_refused_with_a_sentence(pattern):
    with pytest.raises(TooBig):
        compile_find(pattern, is_regex=True, case_sensitive=False)
    assert compile_find("a{10}" * 100, is_regex=True, case_sensitive=False)  # 1,000 steps: fine
    assert written_out(f"a{{{PATTERN_ITEMS}}}") == PATTERN_ITEMS


def test_a_caption_grown_past_the_limit_stops_the_replacement_at_that_caption():
    pattern = compile_find("(?:)", is_regex=True, case_sensitive=False)  # an empty match at every letter
    captions = [("first.png", "a" * 5000), ("second.png", "b" * 5000)]
    with pytest.raises(TooLong) as raised:
        replace_all(pattern, "x" * 1000, captions, max_length=CAPTION_MAX)
    assert raised.value.name == "first.png" and raised.value.more  # only 11 of its 5,001 matches were written
    assert raised.value.length == 11 * 1000 + 5000
    fine = replace_all(compile_find("a", is_regex=False, case_sensitive=False), "bb", [("c.png", "a cat")],
                       max_length=CAPTION_MAX)
    assert [(c.after, c.count) for c in fine] == [("bb cbbt", 2)]
    with pytest.raises(TooLong) as exact:  # under the count bound: the length is exact
        replace_all(compile_find("a", is_regex=False, case_sensitive=False), "b" * 3,
                    [("d.png", "a" * 100 + "z" * 9950)], max_length=CAPTION_MAX)
    assert not exact.value.more and exact.value.length == 10_250


def test_the_api_refuses_both_with_a_422(client, dataset_id):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", b"a red car")])
    url = f"/api/datasets/{dataset_id}/captions/replace"
    big = client.post(url, json={"find": "(?:a{1000}){100}", "replace": "x", "regex": True})
    assert big.status_code == 422 and big.get_json()["error"].startswith("This pattern repeats too much")
    grown = client.post(url, json={"find": "(?:)", "replace": "x" * 5000, "regex": True})
    assert grown.status_code == 422
    assert grown.get_json()["error"].startswith("This change would make the caption of a.png more than ")
    long = client.post(url, json={"find": "red", "replace": "x" * (CAPTION_MAX + 1)})
    assert long.status_code == 422 and long.get_json()["error"].startswith("The replacement is too long")
    assert client.post(url, json={"find": "red", "replace": "blue"}).get_json()["images"] == 1
