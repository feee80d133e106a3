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
