"""A chunked upload may be resumed for two days after its last chunk, not two days after it began: a big upload
paused for a day and resumed the next keeps what it sent; one silent for two days is swept."""

from __future__ import annotations

import os
import time

from studio import chunked
from tests import test_datasets_support as support

ds_app, client, dataset_id = support.ds_app, support.client, support.dataset_id
DAY = 24 * 3600


def _age(path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def _session(client, dataset_id: str) -> tuple[str, int]:
    info = client.post(f"/api/datasets/{dataset_id}/uploads", json={"filename": "big.zip", "size": 3_000_000})
    assert info.status_code == 201, info.get_json()
    return info.get_json()["id"], min(info.get_json()["chunk_size"], 3_000_000)


def test_a_session_sent_to_yesterday_survives_the_sweep_of_its_third_day(client, dataset_id, studio_root):
    sid, chunk_size = _session(client, dataset_id)
    assert client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=b"x" * chunk_size).status_code == 200
    folder = studio_root / ".uploads" / f"session-{sid}"
    _age(folder, 3 * DAY)  # begun three days ago ...
    _age(folder / "session.json", 3 * DAY)
    _age(folder / "chunks", DAY)  # ... its last chunk arrived yesterday
    _session(client, dataset_id)  # a new session sweeps the old ones
    state = client.get(f"/api/datasets/{dataset_id}/uploads/{sid}")
    assert state.status_code == 200 and state.get_json()["received"] == [0]


def test_a_session_silent_for_two_days_is_swept(client, dataset_id, studio_root):
    sid, chunk_size = _session(client, dataset_id)
    assert client.put(f"/api/datasets/{dataset_id}/uploads/{sid}/chunks/0", data=b"x" * chunk_size).status_code == 200
    folder = studio_root / ".uploads" / f"session-{sid}"
    for path in (folder, folder / "session.json", folder / "chunks"):
        _age(path, chunked.SESSION_MAX_AGE_S + 60)
    _session(client, dataset_id)
    assert not folder.exists()
    gone = client.get(f"/api/datasets/{dataset_id}/uploads/{sid}")
    assert gone.status_code == 404 and "start the upload again" in gone.get_json()["error"]
