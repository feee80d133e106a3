"""Caption words: how many captions use each word and phrase, the trigger word apart, and a removal that
the existing Find & replace (with Undo) does in one step."""

from __future__ import annotations

from app.caption_words import count_words
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id

CAPTIONS = ["tok, a woman with red hair, smiling, outdoors",
            "a photo of tok, woman with red hair, smiling, indoors",
            "Tok, WOMAN in the park, red hair",
            "woman, red hair, smiling"]


def test_words_are_counted_once_per_caption_without_common_words():
    counted = count_words(CAPTIONS + ["woman woman woman"], "tok")
    words = {w["word"]: w["images"] for w in counted["words"]}
    assert words["woman"] == 5 and words["red"] == 4 and words["smiling"] == 3
    assert not {"a", "with", "the", "in", "of", "photo", "tok"} & set(words)  # common words, the trigger word
    assert counted["words"][0] == {"word": "woman", "images": 5}  # most frequent first
    assert counted["trigger"] == {"word": "tok", "images": 3}
    assert counted["captions"] == 5
    phrases = {p["word"]: p["images"] for p in counted["phrases"]}
    assert phrases == {"red hair": 2}  # shared by several captions and more than one word
    assert count_words([], "")["trigger"] is None


def test_the_api_counts_the_datasets_captions(client, dataset_id):
    upload(client, dataset_id, [(f"img{i}.png", image_bytes(i)) for i in range(5)])
    for i, caption in enumerate(CAPTIONS):
        response = client.put(f"/api/datasets/{dataset_id}/captions/img{i}.png", json={"caption": caption})
        assert response.status_code == 200
    data = client.get(f"/api/datasets/{dataset_id}/captions/words").get_json()
    assert data["images"] == 5 and data["captions"] == 4
    assert data["words"][:3] == [{"word": w, "images": 4} for w in ("hair", "red", "woman")]  # ties by word
    assert data["trigger"] == {"word": "tok", "images": 3}

    # what the dialog's Remove sends to Find & replace: the word with its comma, every caption, then Undo
    pattern = r"\bred hair\b\s*,\s*|,?\s*\bred hair\b(?!\s*,)"
    result = client.post(f"/api/datasets/{dataset_id}/captions/replace",
                         json={"find": pattern, "replace": "", "regex": True, "apply": True}).get_json()
    assert result["images"] == 4
    after = [client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"][i]["caption"] for i in range(4)]
    assert after == ["tok, a woman with smiling, outdoors", "a photo of tok, woman with smiling, indoors",
                     "Tok, WOMAN in the park", "woman, smiling"]
    assert client.post(f"/api/datasets/{dataset_id}/captions/undo").get_json()["restored"] == 4
    assert client.get(f"/api/datasets/{dataset_id}/captions/words").get_json()["phrases"] == [
        {"word": "red hair", "images": 2}]
    assert client.get("/api/datasets/nope/captions/words").status_code == 404


def test_captions_longer_than_the_text_encoder_reads_are_counted_and_listed(client, dataset_id):
    long = "tok, " + "a woman with red hair, smiling, outdoors, " * 50
    upload(client, dataset_id, [("a.png", image_bytes(1)), ("a.txt", long.encode()),
                                ("b.png", image_bytes(2)), ("b.txt", b"tok, a short one")])
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["long_captions"] == 1
    listed = client.get(f"/api/datasets/{dataset_id}/images?filter=long").get_json()["images"]
    assert [i["name"] for i in listed] == ["a.png"]
    client.put(f"/api/datasets/{dataset_id}/captions/a.png", json={"caption": "tok, shorter now",
                                                                   "base_version": listed[0]["version"]})
    assert client.get(f"/api/datasets/{dataset_id}").get_json()["long_captions"] == 0
