"""Captions in any script: the words panel lists a word as the captions spell it (Hindi with its vowel signs, an
accent typed apart as one letter, "straße" not "strasse", "σοφος" with its final sigma), and Find & replace finds a
word typed composed in a caption that has its accent apart, so the panel's Remove finds every caption it counted."""

from __future__ import annotations

import unicodedata

from app.caption_words import count_words
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id
DECOMPOSED = unicodedata.normalize("NFD", "café au lait, red hair")


def test_words_keep_their_marks_accents_and_letters():
    counted = count_words(["हिन्दी भाषा, red hair", DECOMPOSED, "café noir, STRASSE", "straße, ΣΟΦΟΣ"], "")
    words = {w["word"]: w["images"] for w in counted["words"]}
    assert words["हिन्दी"] == 1 and words["भाषा"] == 1 and not {"ह", "न", "द"} & set(words)
    assert words["café"] == 2 and "cafe" not in words
    assert words["straße"] == 1 and words["strasse"] == 1  # each as spelt: Remove finds what the panel shows
    assert words["σοφος"] == 1
    assert count_words(["Tök, a cat", "a dog"], "TÖK")["trigger"] == {"word": "TÖK", "images": 1}


def test_replace_finds_a_composed_word_in_a_decomposed_caption_and_undo_restores_its_bytes(client, dataset_id,
                                                                                          studio_root):
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", DECOMPOSED.encode()),
                                ("b.png", image_bytes(2)), ("b.txt", "café noir".encode())])
    url = f"/api/datasets/{dataset_id}/captions/replace"
    panel = client.get(f"/api/datasets/{dataset_id}/captions/words").get_json()
    assert {"word": "café", "images": 2} in panel["words"]
    # what the panel's Remove sends (words.js), the word as the panel lists it
    word = r"(?<!\w)café(?!\w)"
    body = {"find": rf"{word}\s*,\s*|,?\s*{word}(?!\s*,)", "replace": "", "regex": True}
    preview = client.post(url, json=body).get_json()
    assert preview["images"] == 2
    assert client.post(url, json={**body, "apply": True}).get_json()["images"] == 2
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    assert {image["name"]: image["caption"] for image in images} == {"a.png": "au lait, red hair", "b.png": "noir"}
    assert client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()["restored"] == 2
    assert (studio_root / "datasets" / dataset_id / "a.txt").read_bytes() == DECOMPOSED.encode()
    plain = client.post(url, json={"find": "CAFÉ", "replace": "tea"}).get_json()  # case aside, accents apart
    assert plain["images"] == 2 and plain["rows"][0]["after"] == "tea au lait, red hair"
