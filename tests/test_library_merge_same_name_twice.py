"""Two tabs merge different LoRAs under the same name at once: each checked that the name was free, and the second
merged file replaced the first without a word (both answered 201). One is made; the other is told the name is taken."""

from __future__ import annotations

import threading
import time

from tests.test_lora_merge import library  # noqa: F401


def test_two_merges_of_one_name_at_once_make_one_file_and_refuse_the_other(library, trainer_app, monkeypatch):  # noqa: F811
    import trainer.lora_merge

    real = trainer.lora_merge.merge

    def slow(*args, **kwargs):  # a merge of full-size LoRAs takes seconds: the other tab's request comes meanwhile
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer.lora_merge, "merge", slow)
    answers = {}

    def merge(strength: float) -> None:
        body = {"name": "both", "files": [{"file": "cat.safetensors", "strength": strength},
                                          {"file": "style.safetensors", "strength": 1.0}]}
        answers[strength] = trainer_app.test_client().post("/api/library/merge", json=body)

    threads = [threading.Thread(target=merge, args=(strength,)) for strength in (1.0, -1.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(answer.status_code for answer in answers.values())
    assert codes == [201, 409], {k: v.get_json() for k, v in answers.items()}
    refused = next(answer for answer in answers.values() if answer.status_code == 409)
    assert "both.safetensors is in the library already" in refused.get_json()["error"]
    assert sorted(p.name for p in library.loras.glob("*.safetensors")) == ["both.safetensors", "cat.safetensors",
                                                                           "style.safetensors"]


def test_a_merge_takes_a_name_in_any_script_as_rename_does(library, trainer_client):  # noqa: F811
    body = {"files": [{"file": "cat.safetensors"}, {"file": "style.safetensors"}]}
    made = trainer_client.post("/api/library/merge", json={**body, "name": "猫 スタイル"})
    assert made.status_code == 201, made.get_json()  # was: 'name' must be 1-80 letters ... (Latin only)
    assert made.get_json()["file"] == "猫-スタイル.safetensors"
    assert (library.loras / "猫-スタイル.safetensors").is_file()
    accented = trainer_client.post("/api/library/merge", json={**body, "name": "Cafe\u0301 mix"})  # é as e + accent
    assert accented.status_code == 201 and accented.get_json()["file"] == "Café-mix.safetensors"
    # the same name in other letter case is the same file on some disks: refused, not a second file
    twice = trainer_client.post("/api/library/merge", json={**body, "name": "CAFÉ-MIX"})
    assert twice.status_code == 409 and "Café-mix.safetensors is in the library already" in twice.get_json()["error"]
    nothing = trainer_client.post("/api/library/merge", json={**body, "name": "!!!"})
    assert nothing.status_code == 422 and "no letter or digit" in nothing.get_json()["error"]
