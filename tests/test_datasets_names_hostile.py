"""Dataset names a user may type or paste: invisible characters, direction overrides, accents typed as two
characters, and two tabs renaming two datasets to one name at the same moment."""

from __future__ import annotations

import threading

from tests import test_datasets_support as support

ds_app, client = support.ds_app, support.client


def test_a_name_of_invisible_characters_is_refused_and_overrides_are_dropped(client):
    for invisible in ["\u202e", "\u200b", "\ufeff", "\u200f\u2066", "\x00\x07"]:
        answer = client.post("/api/datasets", json={"name": invisible})
        assert answer.status_code == 422, invisible
        assert answer.get_json()["error"] in {
            "The name shows nothing (only invisible characters): give it letters, digits or emoji.",
            "Give the dataset a name."}
    assert client.get("/api/datasets").get_json()["datasets"] == []  # no card with an empty title
    made = client.post("/api/datasets", json={"name": "\u202egpj.exe"}).get_json()
    assert made["name"] == "gpj.exe"  # shown as typed, not as "exe.jpg", and the dialog's words stay in order
    assert client.post("/api/datasets", json={"name": "my\x00cat\u2067"}).get_json()["name"] == "my cat"
    # letters of any script, emoji joined into one, and the marks some scripts need are kept
    for name in ["קטה שלי", "猫 🐈‍⬛", "नमस्ते"]:
        assert client.post("/api/datasets", json={"name": name}).get_json()["name"] == name
    renamed = client.patch(f"/api/datasets/{made['id']}", json={"name": "\u200b"})
    assert renamed.status_code == 422
    assert client.patch(f"/api/datasets/{made['id']}", json={"name": "\u202dok"}).get_json()["name"] == "ok"


def test_an_accent_typed_as_two_characters_is_the_same_name(client):
    composed = client.post("/api/datasets", json={"name": "Café"}).get_json()
    assert composed["name"] == "Caf\u00e9"
    again = client.post("/api/datasets", json={"name": "Cafe\u0301"}).get_json()  # as a Mac keyboard sends it
    assert again["name"] == "Caf\u00e9 2"  # not a second "Café" that looks the same
    other = client.post("/api/datasets", json={"name": "Dogs"}).get_json()
    renamed = client.patch(f"/api/datasets/{other['id']}", json={"name": "CAFE\u0301"})
    assert renamed.status_code == 409 and renamed.get_json()["details"][0]["free"] == "CAF\u00c9 3"
    # 50 accented letters are 50 characters, though typed as 100
    assert client.post("/api/datasets", json={"name": "e\u0301" * 50}).status_code == 201


def _rename_all_at_once(ds_app, ids: list[str], name: str) -> list[int]:
    """Each dataset renamed to `name` from a tab of its own, all let go at the same moment; the answers' statuses."""
    ready = threading.Barrier(len(ids))
    answers: dict[str, int] = {}

    def rename(dataset_id: str) -> None:
        tab = ds_app.test_client()
        ready.wait()
        answers[dataset_id] = tab.patch(f"/api/datasets/{dataset_id}", json={"name": name}).status_code

    threads = [threading.Thread(target=rename, args=(dataset_id,)) for dataset_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(answers.values())


def test_two_tabs_renaming_two_datasets_to_one_name_at_once_leave_one_of_that_name(ds_app):
    setup = ds_app.test_client()
    for attempt in range(3):
        ids = [setup.post("/api/datasets", json={"name": f"Set {attempt}-{n}"}).get_json()["id"] for n in range(8)]
        assert _rename_all_at_once(ds_app, ids, f"Shared {attempt}") == [200] + [409] * (len(ids) - 1)
        names = [d["name"] for d in setup.get("/api/datasets").get_json()["datasets"]]
        assert names.count(f"Shared {attempt}") == 1
