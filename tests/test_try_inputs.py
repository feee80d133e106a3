"""Try the LoRA refuses numbers that are no numbers with a sentence (422), never an internal error: Python's JSON
reads NaN and Infinity, which a script or a hand-written curl call may send."""

from __future__ import annotations

import pytest

from tests.test_trainer_renders import REQUEST, app, client, finished_job, settings, store  # noqa: F401


@pytest.mark.parametrize("field", ["seed", "width", "height", "steps"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_whole_number_that_is_not_finite_is_refused(client, store, settings, demo_paths, field, value):  # noqa: F811
    job = finished_job(store, settings.root, demo_paths)
    body = (f'{{"prompt": "a cat", "strengths": [0, 1], "{field}": {value}}}').encode()
    response = client.post(f"/api/jobs/{job.id}/renders", data=body, content_type="application/json")
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"] == f"'{field}' must be a whole number."
    assert client.get(f"/api/jobs/{job.id}/renders").get_json()["renders"] == []


def test_a_library_render_refuses_them_too(client, store, settings, demo_paths):  # noqa: F811
    from studio.workspace import Workspace
    from tests.test_trainer_renders import make_lora

    library = Workspace(settings.root).loras
    library.mkdir(parents=True, exist_ok=True)
    make_lora(demo_paths, library / "style.safetensors")
    body = b'{"prompt": "a cat", "seed": Infinity}'
    response = client.post("/api/library/files/style.safetensors/renders", data=body, content_type="application/json")
    assert response.status_code == 422 and response.get_json()["error"] == "'seed' must be a whole number."
    assert client.post("/api/library/files/style.safetensors/renders", json={**REQUEST, "seed": 3}).status_code == 202


def test_the_options_pasted_with_a_prompt_that_a_render_does_not_take_are_said(client, store, settings,  # noqa: F811
                                                                               demo_paths):
    job = finished_job(store, settings.root, demo_paths)
    pasted = "a cat on a sofa --w 512 --n blurry, low quality --m 0.6 --x 3"
    made = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "prompt": pasted}).get_json()["render"]
    assert made["prompt"].endswith("a cat on a sofa") and made["width"] == 512
    assert made["notes"] == [
        "--x is not a preview option here (known: --w, --h, --d, --s, --l, --n, --m); it is left out of the prompt.",
        "--n (a negative prompt) was left out: a render here has none.",
        "--m (the LoRA's strength) was left out: the strengths you pick set it here."]
    plain = client.post(f"/api/jobs/{job.id}/renders", json={**REQUEST, "seed": 5}).get_json()["render"]
    assert plain["notes"] == []
