"""A find & replace made while auto-caption runs is the last bulk change: Undo takes it back, not the auto-caption
run (whose undo, saved as it goes, used to replace the newer record, so the find & replace could not be undone)."""

from __future__ import annotations

from tests.test_autocaption_edits import _block_again
from tests.test_datasets_autocaption import _captions, _setup, stand_in  # noqa: F401 - the fixture
from tests.test_datasets_support import wait_job


def test_a_find_and_replace_during_auto_caption_is_what_undo_takes_back(make_settings, stand_in):  # noqa: F811
    client, did = _setup(make_settings, stand_in.url, widths=(60, 61, 62))
    client.put(f"/api/datasets/{did}/captions/w62.png", json={"caption": "a red cat"})
    stand_in.block_width = 61
    assert client.post(f"/api/datasets/{did}/caption", json={"mode": "skip"}).status_code == 202
    assert stand_in.blocked.wait(10), "the run never reached the blocking image"
    replaced = client.post(f"/api/datasets/{did}/captions/replace",
                           json={"find": "red", "replace": "blue", "apply": True}).get_json()
    assert replaced["images"] == 1  # while the run waits on w61
    _block_again(stand_in, 0).set()
    job = wait_job(client, f"/api/datasets/{did}/caption", key="job")
    assert job["status"] == "completed", job
    assert client.get(f"/api/datasets/{did}/captions/undo").get_json()["op"] == "find/replace"
    assert client.post(f"/api/datasets/{did}/captions/undo").status_code == 200
    captions = _captions(client, did)
    assert captions["w62.png"] == "a red cat"  # the find & replace, taken back
    assert captions["w60.png"] == "60px detailed image" and captions["w61.png"] == "61px detailed image"  # kept
