"""A bulk change (find & replace, prepend/append) never leaves a caption longer than the editor can save
(CAPTION_MAX): it is refused with a sentence naming the caption, and nothing is written."""

from __future__ import annotations

from app.captions import CAPTION_MAX
from tests import test_datasets_support as support
from tests.test_datasets_support import image_bytes, upload

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id
BEFORE = {"a.png": "a red car", "b.png": "a blue " + "a" * 50}


def _captions(client, dataset_id) -> dict[str, str]:
    images = client.get(f"/api/datasets/{dataset_id}/images").get_json()["images"]
    return {image["name"]: image["caption"] for image in images}


def _seed(client, dataset_id) -> None:
    upload(client, dataset_id, [(name, image_bytes(i)) for i, name in enumerate(BEFORE)]
           + [(name.replace(".png", ".txt"), text.encode()) for name, text in BEFORE.items()])
    assert _captions(client, dataset_id) == BEFORE


def test_a_replacement_that_makes_a_caption_too_long_is_refused(client, dataset_id):
    _seed(client, dataset_id)
    url = f"/api/datasets/{dataset_id}/captions/replace"
    for apply in (False, True):  # the preview says so already
        response = client.post(url, json={"find": "a", "replace": "x" * 300, "apply": apply})
        assert response.status_code == 422
        assert response.get_json()["error"].startswith("This change would make the caption of b.png ")
    assert _captions(client, dataset_id) == BEFORE
    assert client.get(f"/api/datasets/{dataset_id}/captions/undo").get_json() == {"available": False}
    assert client.post(url, json={"find": "red", "replace": "green", "apply": True}).status_code == 200


def test_prepend_that_makes_a_caption_too_long_is_refused(client, dataset_id):
    _seed(client, dataset_id)
    url = f"/api/datasets/{dataset_id}/captions/affix"
    response = client.post(url, json={"append": "y " * (CAPTION_MAX // 2 - 10)})
    assert response.status_code == 422 and "caption of b.png" in response.get_json()["error"]
    assert _captions(client, dataset_id) == BEFORE  # a.png, short enough, is not changed alone either
    assert client.post(url, json={"prepend": "tok"}).get_json() == {"changed": 2}
